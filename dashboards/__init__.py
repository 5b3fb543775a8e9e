"""The query layer, the Stats APIs, the web dashboard and the privacy team's pages."""
