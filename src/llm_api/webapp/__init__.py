"""The browser app, built from web/ into static/ and served by the gateway at ``/``."""
