"""The dashboard's views, one module each (and the sidebar with the filters)."""
