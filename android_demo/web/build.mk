# The web peer (android_demo/web): LiteRT.js from npm, pinned by
# package-lock.json and installed at build time (node_modules is never
# committed), and Debian's chromium for the browser test (Playwright drives
# it; no browser download). Included by the top Makefile.

WEB_DIR := android_demo/web
# chromium: the browser test's headless browser; fonts-dejavu-core: text in its screenshot.
DEBIAN_PACKAGES += chromium fonts-dejavu-core
PHONE_TARGETS += web-deps

.PHONY: web-deps

web-deps: $(WEB_DIR)/node_modules/.package-lock.json

# npm ci again whenever package.json or the lock changes (npm writes
# node_modules/.package-lock.json on every install: its age is the install's).
$(WEB_DIR)/node_modules/.package-lock.json: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "Installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; \
	fi
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	@touch $@
