"""Alignment data techniques shared by recipes: Constitutional AI and back-translation (Bai et al. 2022; Xu et al. 2022).

constitution   principles as data (critique / revision / preference phrasings), seeded sampling
soft_labels    RL-CAI soft preference from "(A)"/"(B)" logprobs, vote fallback, CoT clamping
gamma          back-translation Gamma score: per-sentence z-normalisation, mixing, selection
calls          calling a model from inside a step with usage and provenance recorded
"""
