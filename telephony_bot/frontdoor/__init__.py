"""The front door: Kamailio's dispatcher in front of the SIP workers.

A pjsua2 worker takes at most 4 calls, so one public SIP address needs several workers
behind a SIP load balancer. `render` fills the Kamailio template, `kamailio` finds and runs
the binary, `rpc` reads its state over JSON-RPC, `monitor` turns that state into log lines
and the `telephony-bot frontdoor status` table.
"""
