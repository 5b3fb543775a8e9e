"""Import the modules whose CLI commands register themselves with `firstparty.cli.command`.

Each package adds its commands in its own module; list that module here.
"""

from __future__ import annotations

import dashboards.access_commands  # users, shares
import dashboards.privacy.commands  # noqa: F401 - audit, dsr, privacy-notice, records
import ingest.demo_command  # demo-data
import ingest.salts_command  # noqa: F401 - salts
