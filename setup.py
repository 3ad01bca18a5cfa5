"""delight-fairseq: DeLighT (ICLR 2021) as a plugin for stock fairseq.

The requirements below are compatible ranges, so that the plugin installs into an
existing environment (a CUDA build of torch, another Python) without pip replacing
torch. The exact versions this project tests with are in constraints.txt, which
scripts/setup.sh and CI install from (README, "Setting up").
"""

from setuptools import find_packages, setup

setup(
    name="delight-fairseq",
    version="0.1.0",
    description="DeLighT: Deep and Light-weight Transformer, as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(
        include=["delight_fairseq", "delight_fairseq.*", "delight_lite"]
    ),
    package_data={"delight_fairseq": ["csrc/*.cpp", "csrc/*.h"]},
    install_requires=[
        "torch>=2.6",  # torch.load's weights_only default (compat.py) and torch.compile
        "fairseq-fixed>=0.12.3,<0.13",  # fairseq's main branch, importable on 3.11+
        "numpy>=1.24",
        "threadpoolctl>=3",  # delight-lite --threads (the BLAS threads)
        "hydra-core>=1.3,<1.4",
        "omegaconf>=2.3,<2.4",
        "sacrebleu>=2.0,<3",
        "sentencepiece>=0.1.99",
        "sacremoses>=0.0.53",
        "subword-nmt>=0.3.8,<0.4",
        "ninja>=1.11",  # builds the fused GLT kernel (delight_fairseq/csrc)
    ],
    entry_points={
        "console_scripts": [
            "delight-prep = delight_fairseq.tools.prep.cli:console",
            "delight-train = delight_fairseq.tools.training:train_main",
            "delight-evaluate = delight_fairseq.tools.evaluate:main",
            "delight-reproduce = delight_fairseq.tools.reproduce:main",
            "delight-average = delight_fairseq.tools.averaging:main",
            "delight-demo = delight_fairseq.tools.demo:main",
            "delight-convert-authors = delight_fairseq.tools.convert_authors:main",
            "delight-translate = delight_fairseq.inference.cli:main",
            "delight-export = delight_fairseq.inference.export:main",
            "delight-lite = delight_lite.cli:main",
        ]
    },
    extras_require={
        # tensorboardX: fairseq-train --tensorboard-logdir (tests/test_precision_logging.py)
        "test": ["pytest>=8", "ruff>=0.6", "tensorboardX>=2.6"],
        # matplotlib: the benchmarks' plots; ctranslate2: benchmarks/translate.py
        "bench": ["matplotlib>=3.7", "ctranslate2>=4.8,<5"],
    },
)
