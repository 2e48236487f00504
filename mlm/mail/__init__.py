"""Mail of the core: building messages (`build`), DKIM signing (`dkim`), sending rates
(`throttle`), sending-domain DNS checks (`sender_checks`) and the Outbox backend (`outbox`)."""
