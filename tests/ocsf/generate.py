"""Writes detection_finding-1.1.0.schema.json: the JSON Schema (draft 2020-12) of OCSF 1.1.0's
Detection Finding class (2004) without profiles, from the schema export that the PyPI package
ocsf-json-schema bundles (OCSF's own JSON, offline).

    python3 -m venv /tmp/ocsf && /tmp/ocsf/bin/pip install ocsf-json-schema==1.2.0
    /tmp/ocsf/bin/python tests/ocsf/generate.py
"""
import json
from pathlib import Path

from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version="1.1.0"))
out = Path(__file__).with_name("detection_finding-1.1.0.schema.json")
with out.open("w") as f:
    json.dump(schema.get_class_schema("detection_finding", profiles=[]), f, indent=2, sort_keys=True)
