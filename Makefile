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
# `make package`: the wheel and one packed environment (venv-pack layout) for cluster executors.
VERSION := $(shell sed -n 's/^ *version="\([^"]*\)",/\1/p' setup.py)
WHEEL := dist/fakeface-$(VERSION)-py3-none-any.whl
ENV_ARCHIVE := dist/fakeface-$(VERSION)-env.tar.gz
PACK_DIR := build/pack
PACKAGE_INPUTS := setup.py $(shell find fakeface -type d -name __pycache__ -prune -o -print)
# Left out of the archive: pyspark's jars (the cluster's own Spark runs the JVM side; its
# pyspark.zip comes first on the executors' PYTHONPATH) and TensorFlow's C++ headers.
PACK_EXCLUDE := --exclude 'lib/python3.11/site-packages/pyspark/jars/*' \
                --exclude 'lib/python3.11/site-packages/tensorflow/include/*'
# Where executors' Python 3.11 lives, when not at the build machine's path (e.g. /usr).
PYTHON_PREFIX ?=

.PHONY: install check-java test test-fast lint format demo mlflow-ui bench-ingest bench-train \
        bench-score bench-accuracy bench-study bench-heldout bench-load bench-listing bench-serve \
        bench-cluster package clean

install: check-java $(STAMP)

check-java:
	@command -v java >/dev/null 2>&1 || [ -x "$$JAVA_HOME/bin/java" ] || { \
	  echo "Java not found: Spark needs Java 17 (apt-get install openjdk-17-jre-headless)"; exit 1; }

$(STAMP): setup.py
	@command -v $(PYTHON_BIN) >/dev/null || { echo "$(PYTHON_BIN) not found: install Python 3.11"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[dev,notebooks,packaging]'
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

# dist/: the wheel, and the project installed from it (not editable) with every runtime
# dependency in a fresh venv of the .venv's base Python, packed by venv-pack (bin/python at
# its top). The environment is rebuilt only when the wheel's content (its RECORD of file
# hashes, requirements included) changed: `make package` with nothing changed takes seconds.
package: install $(ENV_ARCHIVE)

$(WHEEL): $(PACKAGE_INPUTS) | $(STAMP)
	@mkdir -p dist
	rm -rf build/lib build/bdist.* dist/fakeface-*.whl
	$(PY) -m pip wheel -q --no-deps --no-build-isolation --wheel-dir dist .
	@rm -rf build/lib build/bdist.*

$(PACK_DIR).wheel-record: $(WHEEL)
	@$(PY) -c 'import sys, zipfile, hashlib; z = zipfile.ZipFile(sys.argv[1]); \
	  print(hashlib.sha256(z.read([n for n in z.namelist() if n.endswith("/RECORD")][0])).hexdigest())' \
	  $(WHEEL) > $@.new
	@if cmp -s $@.new $@ && [ -f $(ENV_ARCHIVE) ]; then rm $@.new; touch $(ENV_ARCHIVE); \
	  else mv $@.new $@; fi

$(ENV_ARCHIVE): $(PACK_DIR).wheel-record
	rm -rf $(PACK_DIR) && mkdir -p $(PACK_DIR)
	"$$($(PY) -c 'import sys; print(sys._base_executable)')" -m venv $(PACK_DIR)/env
	$(PACK_DIR)/env/bin/python -m pip install -q --disable-pip-version-check $(WHEEL)
	cd $(PACK_DIR) && env/bin/python -c 'import fakeface, sys; \
	  assert fakeface.__file__.startswith(sys.prefix), fakeface.__file__'
	$(VENV)/bin/venv-pack -q -p $(PACK_DIR)/env -o $(PACK_DIR)/env.tar.gz $(PACK_EXCLUDE) \
	  $(if $(PYTHON_PREFIX),--python-prefix $(PYTHON_PREFIX))
	find dist -maxdepth 1 -name 'fakeface-*' ! -name '$(notdir $(WHEEL))' -delete
	mv $(PACK_DIR)/env.tar.gz $@
	rm -rf $(PACK_DIR)
	@ls -l $(WHEEL) $@

# The main job end to end on embedded defaults: synthetic corpus, local Spark, SQLite MLflow.
demo: install
	bash jobs/demo.sh

mlflow-ui: install
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 \
	  --backend-store-uri "$$($(PY) -c 'from fakeface.config import load_config; print(load_config("conf/local.yaml").tracking_uri)')"

bench-ingest: install
	$(PY) benchmarks/ingest.py --small 400 --large 2000 --out-size 160 600 --profile

bench-train: install
	$(PY) benchmarks/train.py

bench-score: install
	$(PY) benchmarks/score.py

bench-accuracy: install
	$(PY) benchmarks/accuracy.py

bench-study: install
	benchmarks/study600.sh

bench-heldout: install
	$(PY) benchmarks/heldout.py

bench-load: install
	$(PY) benchmarks/load.py

bench-listing: install
	$(PY) benchmarks/listing.py

# The registered model behind `mlflow models serve` from a fresh venv of its own
# requirements.txt: parity with the nightly job, latency, throughput per core, a load run.
BENCH_SERVE_ARGS ?=
bench-serve: install
	$(PY) benchmarks/serve.py $(BENCH_SERVE_ARGS)

bench-cluster: package
	$(PY) benchmarks/cluster.py

clean:
	rm -rf var/ spark-warehouse/ metastore_db/ derby.log .pytest_cache .ruff_cache
