"""Examples of opero inside frameworks, shown in ``docs/integrations.md`` and tested in
``tests/integrations/``."""
