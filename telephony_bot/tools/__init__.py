"""Tools the model can call: builtins (hangup, transfer, send_dtmf) and integrator tools."""
