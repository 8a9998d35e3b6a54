# nbgrader settings of every user's server on the course hub: the exchange through which
# assignments are released, fetched, submitted, collected and fed back. The hub
# (deploy/jupyterhub_config.py, deploy/z2jh/values.yaml) puts this folder on JUPYTER_CONFIG_PATH.
#
#   CNNBOOK_EXCHANGE_KIND=folder (default)  a shared folder, CNNBOOK_EXCHANGE: one machine, one
#                                           course
#   CNNBOOK_EXCHANGE_KIND=ngshare           the ngshare service (the hub's own, or a Kubernetes
#                                           hub's): several courses, or servers that share no
#                                           folder (deploy/README.md)
import os

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

exchange_kind = os.environ.get("CNNBOOK_EXCHANGE_KIND", "folder")
if exchange_kind == "ngshare":
    from ngshare_exchange import configureExchange

    # CNNBOOK_NGSHARE_URL: set by the hub (deploy/jupyterhub_config.py); unset on Kubernetes,
    # where ngshare_exchange finds the service by its DNS name
    configureExchange(c, os.environ.get("CNNBOOK_NGSHARE_URL") or None)
elif exchange_kind == "folder":
    c.Exchange.root = os.environ.get("CNNBOOK_EXCHANGE", "/srv/nbgrader/exchange")
else:
    raise ValueError(
        f"CNNBOOK_EXCHANGE_KIND must be 'folder' or 'ngshare', got {exchange_kind!r}: "
        "set it in the hub's configuration"
    )
