"""Videos from untrusted sources: fetched through the SSRF guard, probed, sanitized, cached, cut into frames."""
