"""Installs the FER2013 TFX pipeline (packages fer_data, model, components, pipeline, serving,
client)."""

from setuptools import find_packages, setup

setup(
    name="fer-pipeline",
    version="0.1.0",
    description="Facial emotion recognition on FER2013 as a TFX pipeline "
    "(Beam, TFDV, TFT, Keras, TFMA, Kubeflow, TF Serving)",
    python_requires=">=3.10,<3.11",
    packages=find_packages(
        include=[
            "fer_data",
            "fer_data.*",
            "model",
            "model.*",
            "pipeline",
            "pipeline.*",
            "components",
            "components.*",
            "serving",
            "serving.*",
            "client",
            "client.*",
        ]
    ),
    package_data={"": ["*.pbtxt"]},
    # The exact, tested versions of everything are in requirements.lock
    # (`make venv` installs it with --no-deps); these are the direct needs.
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-transform==1.16.0",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-model-analysis==0.47.1",
        "apache-beam[gcp]==2.59.0",
        "kfp==2.5.0",
        "tensorflow-serving-api==2.16.1",
        "numpy==1.26.4",
        "pillow",
        "matplotlib",
    ],
    entry_points={
        "console_scripts": [
            "fer-pipeline=pipeline.cli:main",
            "fer-make-data=fer_data.synthetic_faces:main",
            "fer-serve=serving.cli:serve_main",
            "fer-client=client.cli:client_main",
        ]
    },
)
