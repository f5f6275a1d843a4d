"""JSON-shaped documents of the core: policy definitions, vhost metadata, exported and imported
definitions, the durable topology snapshot.

Their values are whatever JSON (or msgpack) holds and each reader checks the keys it uses, as
the documents come from users (management API, definitions files) or from disk: so ``Any``
values, named once here.
"""

from __future__ import annotations

from typing import Any

JSONObject = dict[str, Any]
