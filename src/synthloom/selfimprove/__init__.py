"""Proof of value: LoRA fine-tuning on CPU, ReST-EM / STaR self-improvement, scaling studies.

Heavy dependencies (torch, transformers, peft) are imported lazily inside the modules that need them,
so `import synthloom.selfimprove` stays cheap.
"""
