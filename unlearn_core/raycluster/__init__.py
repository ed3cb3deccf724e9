"""Every Ray session this project starts or joins: where it listens, how long joining may take, what it leaves.

:func:`connect` returns a :class:`RaySession`: a *local instance* started in
this process (``address=None``) or a *cluster* joined at ``address``
(``"HOST:PORT"`` of a GCS, ``"ray://HOST:PORT"`` of a Ray Client server, or
``"auto"``). ``RaySession.close()`` (or leaving its ``with`` block) shuts down
what the session started and only that; a session that found Ray already
initialised in this process shares it and leaves it running.

Loopback. Ray 2.60 rewrites a loopback bootstrap address (``127.0.0.1``,
``localhost``, ``::1``) into the machine's interface address
(``ray._private.services.resolve_ip_for_localhost``), so a driver told to join
``127.0.0.1:PORT`` dials ``<interface>:PORT`` and, when the nodes listen on
loopback only, retries "Failed to connect to GCS" without end; and a local
instance takes the interface address as its node address
(``get_node_ip_address``), so its GCS, raylet, workers and runtime-env agent
listen beyond loopback. Both functions return the loopback address when the
constant ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` is false, which
Ray reads from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when ``ray`` is
imported. :func:`connect` therefore sets that variable to ``0`` (and the
constant, if ``ray`` was imported already) for a local instance and for a
loopback address, and restores both for any other address. The variable also
reaches the raylet's workers, which inherit the driver's environment. With it
set, ``ray start --address ...`` refuses to add a node ("Multi-node Ray
clusters are not supported on Windows and OSX"); a multi-node cluster on
loopback is started with ``ray.cluster_utils.Cluster`` and
``add_node(node_ip_address="127.0.0.1")`` instead (the tests do).

Bounded joining. ``ray.init(address=...)`` has no timeout: against an address
where nothing answers as a GCS it retries for minutes. :func:`connect` first
opens a TCP connection to the address's port (``probe_seconds``, 5 s), which
settles a refused port, an unroutable host or a name that does not resolve at
once; a port that accepts but does not answer as Ray is bounded by running
``ray.init`` in a daemon thread and giving up after the rest of ``timeout``
(30 s). Either way :class:`RayClusterError` carries one line naming the address.

A local instance keeps its files under a private folder (mode 0700, owned by
this user): ``<data dir>/ray``, or ``$TMPDIR/unlearn-ray-<uid>`` when that path
is too long for Ray's socket names or lies inside the source tree. Ray makes
its own temp and session folders world-writable (``try_make_directory_shared``);
they live in the ``s`` sub-folder of that private one, so no other user can
reach them. Its token file (Ray 2.60 turns token authentication on for a new
local instance) is written there too, never to ``~/.ray``. No usage statistics
are sent. ``close()`` calls ``ray.shutdown()`` and then stops every process of
the session that is still alive: the processes Ray lists for the node and all
their descendants, recorded while the session ran, each matched by pid and
start time. A driver killed before it could close leaves the raylet's
dashboard and runtime-env agents running for up to a minute; the session
records its processes in its folder and the next local instance stops those of
sessions whose driver is gone (:func:`reap_stale`).

The package: :mod:`~unlearn_core.raycluster.addresses` (parsing, loopback mode, the probe),
:mod:`~unlearn_core.raycluster.processes` (the private folder, pids and start times, reaping),
:mod:`~unlearn_core.raycluster.session` (:func:`connect`, :class:`RaySession`, :func:`close`) and
:mod:`~unlearn_core.raycluster.tasks` (inside a task: :func:`node_id`, :class:`ProgressChannel`; what it asks for:
:func:`resource_request`; :func:`where_runs_execute`).
"""

from unlearn_core.raycluster.addresses import (LOOPBACK_ENV, PROBE_TIMEOUT_S, RayClusterError, check_address,
                                             is_loopback, probe, set_loopback_mode, split_address)
from unlearn_core.raycluster.processes import (MAX_PRIVATE_DIR, PID_FILE, descendants, private_dir, ray_temp_dir,
                                             reap_stale, stop_processes)
from unlearn_core.raycluster.session import CONNECT_TIMEOUT_S, RaySession, close, connect, current
from unlearn_core.raycluster.tasks import (LOCAL_NODE, ProgressChannel, ResourceRequest, node_id, resource_request,
                                         where_runs_execute)

__all__ = ["CONNECT_TIMEOUT_S", "LOCAL_NODE", "LOOPBACK_ENV", "MAX_PRIVATE_DIR", "PID_FILE", "PROBE_TIMEOUT_S",
           "ProgressChannel", "RayClusterError", "RaySession", "ResourceRequest", "check_address", "close", "connect",
           "current", "descendants", "is_loopback", "node_id", "private_dir", "probe", "ray_temp_dir", "reap_stale",
           "resource_request", "set_loopback_mode", "split_address", "stop_processes", "where_runs_execute"]
