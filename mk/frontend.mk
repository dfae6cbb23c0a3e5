# Browser libraries: htmx and its SSE extension from the npm registry, pinned by package-lock.json, copied
# into static/vendor/ (git-ignored). The pages load them from this server, never from a CDN. The same `npm ci`
# installs oidc-provider, the real OpenID Connect provider the SSO tests run under Node (docs/sso.md).
NPM ?= npm
VENDOR_DIR := static/vendor
VENDOR_FILES := $(VENDOR_DIR)/htmx.min.js $(VENDOR_DIR)/sse.js

$(VENDOR_FILES) &: package.json package-lock.json
	@command -v $(NPM) >/dev/null || { echo "npm is missing: apt-get install nodejs npm (Node >= 18)"; exit 1; }
	$(NPM) ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@mkdir -p $(VENDOR_DIR)
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR_DIR)/htmx.min.js
	cp node_modules/htmx-ext-sse/dist/sse.js $(VENDOR_DIR)/sse.js
	@touch $(VENDOR_FILES)

.PHONY: frontend
frontend: $(VENDOR_FILES)

TEST_PREREQS += $(VENDOR_FILES)
RUN_PREREQS += $(VENDOR_FILES)
