"""Pure building blocks of the code recipes: instruction parsing and filters (Self-Instruct / Code
Alpaca), instance generation, Evol-Instruct operations and elimination, execution-feedback scoring."""
