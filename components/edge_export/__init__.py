"""EdgeExport: TFLite float16 and int8 models of the trained classifier, with measured parity."""
