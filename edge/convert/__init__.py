"""The converter: official float MobileNet v1 0.25/128 → full-integer uint8-in/uint8-out TFLite (see pipeline.py)."""
