# The browser tests drive Debian's chromium through Playwright (never `playwright install`).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "The browser tests need $(CHROMIUM): run 'sudo apt-get install chromium'"; exit 1; fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

.PHONY: browser
browser: $(CHROMIUM)

TEST_PREREQS += $(CHROMIUM)
