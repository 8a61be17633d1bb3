# syntax=docker/dockerfile:1
#
# wegate container image.
#   docker build -t wegate .
#   docker run -d --name wegate --restart unless-stopped --stop-timeout 30 \
#     -p 80:8080 -p 443:8443 \
#     -v /etc/wegate:/etc/wegate:ro -v wegate-state:/var/lib/wegate wegate
#
# The configuration is mounted at /etc/wegate/wegate.yaml (none is baked in: without it the
# container exits 78 and says why). Listen on :8080 / :8443 inside and publish them as 80 / 443.
# Reload: `docker kill -s HUP wegate`. Check a config: `docker run --rm -v /etc/wegate:/etc/wegate:ro wegate check`.

ARG NODE_IMAGE=node:24-bookworm-slim

# --- build stage: compile TypeScript to dist/ ---------------------------------------------------
FROM ${NODE_IMAGE} AS build
# npm reads it from the environment; e.g. --build-arg NPM_CONFIG_REGISTRY=https://registry.npmmirror.com
ARG NPM_CONFIG_REGISTRY=https://registry.npmjs.org/
WORKDIR /opt/wegate
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# --ignore-scripts: the `node` runtime package would fetch a second Node; the image has Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
# Compiled JavaScript, not the .ts sources: Node's built-in type stripping costs ~20-30 MB of RSS.
RUN ./node_modules/.bin/tsc -p tsconfig.build.json

# --- dependency stage: production dependencies only --------------------------------------------
FROM ${NODE_IMAGE} AS deps
ARG NPM_CONFIG_REGISTRY=https://registry.npmjs.org/
WORKDIR /opt/wegate
COPY package.json package-lock.json ./
# --omit=dev drops the `node` runtime package and the test tools; no production dependency needs
# an install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# --- runtime stage ------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# MALLOC_ARENA_MAX=1: one glibc malloc arena for all threads (one per thread by default), ~20 MB
# less peak RSS under load; see systemd/wegate.service.
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=1 \
    WEGATE_CONFIG=/etc/wegate/wegate.yaml \
    WEGATE_HEALTHCHECK_URL=http://127.0.0.1:9464/healthz

# Fixed non-root uid/gid so mounted files can be granted to it (chown 10001 / chgrp 10001).
RUN groupadd --system --gid 10001 wegate \
 && useradd --system --uid 10001 --gid wegate --home-dir /var/lib/wegate --no-create-home \
      --shell /usr/sbin/nologin wegate \
 && mkdir -p /etc/wegate/verify /etc/wegate/tls /var/lib/wegate \
 && chown wegate:wegate /var/lib/wegate \
 && chmod 0750 /var/lib/wegate

WORKDIR /opt/wegate
# Code stays root-owned: the gateway cannot modify itself.
COPY --from=deps /opt/wegate/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY --from=build /opt/wegate/dist ./dist
# Example config, JSON Schema and sample verification file, for reference and `wegate check`.
COPY config ./config

USER wegate:wegate
VOLUME ["/var/lib/wegate"]
# Unprivileged ports inside the container; publish them as 80/443 (-p 80:8080 -p 443:8443).
# Listening on :80/:443 inside also works without root on Docker >= 20.10 (it sets
# net.ipv4.ip_unprivileged_port_start=0 in the container); `--cap-add NET_BIND_SERVICE` does NOT
# help a non-root user. The admin listener (9464) stays on 127.0.0.1 unless the config says otherwise.
EXPOSE 8080 8443
# SIGTERM drains (default 20 s + 5 s grace); Docker's default stop timeout is 10 s, so run with
# --stop-timeout 30 (compose: stop_grace_period: 30s).
STOPSIGNAL SIGTERM
# Slim images have no curl: use node's fetch. The admin listener is on loopback inside the
# container, which is where HEALTHCHECK runs. Change WEGATE_HEALTHCHECK_URL with admin.listen.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.WEGATE_HEALTHCHECK_URL,{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# --max-semi-space-size=4: a 4 MB young generation; --scavenger-max-new-space-capacity-mb=2: a
# young collection once 8 MB of buffers are allocated in it; --no-allocation-site-pretenuring: no
# per-request objects allocated straight in the old generation. Together they keep peak RSS under
# load near 140 MB (Node's defaults let it reach ~240 MB). --no-parallel-scavenge: young
# collections on the main thread, ~4 % less CPU per request. --max-inlined-bytecode-size(-cumulative):
# more inlining in the request path, ~4 % less CPU per small request. See systemd/wegate.service.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--scavenger-max-new-space-capacity-mb=2", "--no-allocation-site-pretenuring", "--no-parallel-scavenge", "--max-inlined-bytecode-size=920", "--max-inlined-bytecode-size-cumulative=1840", "/opt/wegate/dist/src/cli/main.js"]
CMD ["serve", "--config", "/etc/wegate/wegate.yaml"]
