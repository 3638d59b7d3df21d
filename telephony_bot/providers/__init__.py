"""Realtime providers behind one port (`base.Provider`)."""
