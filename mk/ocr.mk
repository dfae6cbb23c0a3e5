# Scanned PDF pages are read by Debian's Tesseract (ingest/parsers/ocr.py; RAGSITE_OCR_LANGUAGES, default eng).
TESSERACT := /usr/bin/tesseract

$(TESSERACT):
	@if [ "$$(id -u)" != 0 ]; then echo "Scanned PDFs are read by $(TESSERACT): run 'sudo apt-get install tesseract-ocr'"; exit 1; fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tesseract-ocr tesseract-ocr-eng

# `make run` installs it where it can (as root) and otherwise says what scanned pages will lack.
.PHONY: ocr ocr-where-possible
ocr: $(TESSERACT)
ocr-where-possible:
	@if [ -x $(TESSERACT) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory $(TESSERACT); \
	else echo "note: scanned PDF pages are not OCRed until tesseract-ocr is installed (sudo apt-get install tesseract-ocr)"; fi

TEST_PREREQS += $(TESSERACT)
RUN_PREREQS += ocr-where-possible
