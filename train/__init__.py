"""Training of Aligners (SFT) and of upstream models (SFT, DPO) with DeepSpeed: ``langchain-aligner train``.

The train/ folder installs as the package ``langchain_aligner_train`` (a top-level ``train`` would collide
with any user's ``train.py``); its modules import one another relatively, so they work under that name.
"""
