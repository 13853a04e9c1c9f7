# fakeface — every target sets up what it needs (make install is idempotent).
SHELL := /bin/bash
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP ?= 127.0.0.1
export TF_CPP_MIN_LOG_LEVEL ?= 2
SUBMIT := $(VENV)/bin/spark-submit --driver-java-options "-Dlog4j2.configurationFile=file:$(abspath conf/log4j2.properties)"
PYTEST_ARGS ?=

.PHONY: install check-java test test-fast lint format demo mlflow-ui bench-ingest bench-train \
        bench-score bench-accuracy bench-heldout bench-load clean

install: check-java $(STAMP)

check-java:
	@command -v java >/dev/null 2>&1 || [ -x "$$JAVA_HOME/bin/java" ] || { \
	  echo "Java not found: Spark needs Java 17 (apt-get install openjdk-17-jre-headless)"; exit 1; }

$(STAMP): setup.py
	@command -v $(PYTHON_BIN) >/dev/null || { echo "$(PYTHON_BIN) not found: install Python 3.11"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[dev,notebooks]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow and not reliability and not cluster and not notebooks" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The main job end to end on embedded defaults: synthetic corpus, local Spark, SQLite MLflow.
demo: install
	bash jobs/demo.sh

mlflow-ui: install
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 \
	  --backend-store-uri "$$($(PY) -c 'from fakeface.config import load_config; print(load_config("conf/local.yaml").tracking_uri)')"

bench-ingest: install
	$(PY) benchmarks/ingest.py

bench-train: install
	$(PY) benchmarks/train.py

bench-score: install
	$(PY) benchmarks/score.py

bench-accuracy: install
	$(PY) benchmarks/accuracy.py

bench-heldout: install
	$(PY) benchmarks/heldout.py

bench-load: install
	$(PY) benchmarks/load.py

clean:
	rm -rf var/ spark-warehouse/ metastore_db/ derby.log .pytest_cache .ruff_cache
