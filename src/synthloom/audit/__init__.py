"""The trust audit: fidelity to real data, unbiasedness, and privacy of a synthetic dataset.

- `fidelity`: MAUVE, precision/recall of distributions, a classifier two-sample test, and length /
  vocabulary / topic-cluster coverage against a reference set.
- `privacy`: PII detection and redaction, leakage of private seeds (distance to closest record,
  nearest-neighbour distance ratio, verbatim spans) and canaries.
- `bias`: demographic representation and stereotypical associations (after HELM).
- `audit`: runs the parts that apply and returns one verdict per check; `synthloom audit` exits 4
  when any check fails.
"""
