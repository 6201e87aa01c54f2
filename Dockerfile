# The gateway as a container image (docs/deploy.md, "A container image"; built and run by
# tests/test_e2e_container.py). Any builder: the legacy one or BuildKit.
#
#   docker build -t qwen-gateway .
#   docker build --build-arg BASE=qwen-gateway-base:trixie -t qwen-gateway .   (no registry: scripts/docker-base.sh)
#
# BASE: a Debian-based image with Python 3.12+ (`python3`, its venv module, `useradd`).
ARG BASE=python:3.13-slim

FROM ${BASE} AS build
WORKDIR /opt/qwen-gateway
# build-ca.pem, when the checkout has one: the CA bundle pip trusts in this stage only (a TLS-inspecting proxy
# between the build and PyPI). This stage is thrown away: the image never holds it.
COPY pyproject.toml build-ca.pe[m] ./
# The dependencies first, read from pyproject.toml: a change to the code alone does not download them again.
RUN python3 -m venv venv \
 && if [ -f build-ca.pem ]; then export PIP_CERT=/opt/qwen-gateway/build-ca.pem; fi \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join([*p["build-system"]["requires"], *p["project"]["dependencies"], *p["project"]["optional-dependencies"]["postgres"]]))' \
    > requirements.txt \
 && venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check -r requirements.txt
# Installed editable from its source, as scripts/setup.sh does: qwen-gateway runs addons/qwen.py from it.
COPY pyproject.toml setup.py README.md src/
COPY addons src/addons
RUN venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation -e src \
 && venv/bin/pip check \
 && venv/bin/python -m compileall -q src/addons

FROM ${BASE}
# A user of its own (numeric in USER, so Kubernetes' runAsNonRoot can check it) and the three folders the
# gateway keeps: its state, Qwen Code's logins, mitmproxy's CA. A new named volume starts as a copy of them.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/qwen --shell /usr/sbin/nologin qwen \
 && install -d -m 700 -o qwen -g qwen /home/qwen/.qwen-gateway /home/qwen/.qwen /home/qwen/.mitmproxy
COPY --from=build /opt/qwen-gateway/venv /opt/qwen-gateway/venv
COPY --from=build /opt/qwen-gateway/src /opt/qwen-gateway/src
ENV PATH=/opt/qwen-gateway/venv/bin:$PATH HOME=/home/qwen PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/qwen
VOLUME ["/home/qwen/.qwen-gateway", "/home/qwen/.qwen", "/home/qwen/.mitmproxy"]
EXPOSE 8080
# The liveness probe, from inside (a loopback client; no proxy even when HTTPS_PROXY is set for Qwen).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["python3", "-c", \
    "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/health/liveness', timeout=4)"]
# SIGTERM drains (docs/deploy.md, "A graceful drain"): answers in progress finish within qwen_drain_s (30 s).
# `docker stop` waits 10 s before SIGKILL unless told: `docker stop -t 60` (compose: stop_grace_period).
STOPSIGNAL SIGTERM
# Beyond loopback the gateway starts only with client keys: named keys (qwen-keys) in the state volume,
# QWEN_GATEWAY_KEYS or qwen_client_keys_file. Arguments after the image name are mitmproxy's, appended.
ENTRYPOINT ["qwen-gateway", "--listen-host", "0.0.0.0"]
