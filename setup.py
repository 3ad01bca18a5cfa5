"""delight-fairseq: DeLighT (ICLR 2021) as a plugin for stock fairseq.

The pins are the stack measured to work on Python 3.11 (README, "Why
fairseq-fixed"). Install torch 2.13.0
and fairseq-fixed first (scripts/setup.sh does it) so that pip never fetches a
CUDA build of torch to build fairseq's extensions.
"""

from setuptools import find_packages, setup

setup(
    name="delight-fairseq",
    version="0.1.0",
    description="DeLighT: Deep and Light-weight Transformer, as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["delight_fairseq", "delight_fairseq.*"]),
    package_data={"delight_fairseq": ["csrc/*.cpp"]},
    install_requires=[
        "torch==2.13.0",
        "fairseq-fixed==0.12.3.1",
        "numpy==2.4.6",
        "hydra-core==1.3.2",
        "omegaconf==2.3.0",
        "sacrebleu==2.6.0",
        "sentencepiece==0.2.3",
        "sacremoses==0.2.0",
        "subword-nmt==0.3.8",
        "scikit-learn==1.9.1",
        "tensorboardX==2.6.5",
        "ninja==1.13.2",  # builds the fused GLT kernel (delight_fairseq/csrc)
    ],
    entry_points={
        "console_scripts": [
            "delight-prep = delight_fairseq.tools.prep.cli:console",
            "delight-train = delight_fairseq.tools.training:train_main",
            "delight-evaluate = delight_fairseq.tools.evaluate:main",
            "delight-reproduce = delight_fairseq.tools.reproduce:main",
            "delight-average = delight_fairseq.tools.averaging:main",
            "delight-demo = delight_fairseq.tools.demo:main",
        ]
    },
    extras_require={
        "test": ["pytest==9.2.0", "ruff==0.17.6"],
        "bench": ["matplotlib==3.11.2"],  # the shoot-out's plot
    },
)
