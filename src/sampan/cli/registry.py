"""The table of commands: name -> "module:attribute" and a one-line summary.

Kept as plain strings so that finding a command, and printing help, imports nothing. Top-level shortcuts
(``images``, ``rmi``, ``tag``) point at the same commands as their management-group forms (``image ls``, ...).
"""

from __future__ import annotations

Entry = tuple[str, str]  # ("module:attribute", summary)

IMAGE: dict[str, Entry] = {
    "analyze": ("build:analyze", "Show the bytes each layer wastes (deleted or overwritten later) and the efficiency"),
    "build": ("build:build", "Build an image from a Dockerfile"),
    "bootstrap": ("images:bootstrap", "Build a base image offline (busybox from busybox-static, debian via debootstrap)"),
    "history": ("images:history", "Show the history of an image"),
    "import": ("images:import_", "Import the contents from a tarball to create a filesystem image"),
    "inspect": ("images:inspect", "Display detailed information on one or more images"),
    "load": ("images:load", "Load an image from a tar archive or STDIN"),
    "ls": ("images:ls", "List images"),
    "prune": ("images:prune", "Remove unused images"),
    "pull": ("distribution:pull", "Download an image from a registry"),
    "push": ("distribution:push", "Upload an image to a registry"),
    "rm": ("images:rm", "Remove one or more images"),
    "save": ("images:save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "tag": ("images:tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
}
IMAGE_ALIASES = {"list": "ls", "remove": "rm", "rmi": "rm"}

MANIFEST: dict[str, Entry] = {
    "annotate": ("manifests:annotate", "Add additional information to a local image manifest"),
    "create": ("manifests:create", "Create a local manifest list for annotating and pushing to a registry"),
    "inspect": ("manifests:inspect", "Display an image manifest, or manifest list"),
    "push": ("manifests:push", "Push a manifest list to a repository"),
    "rm": ("manifests:rm", "Delete one or more manifest lists from local storage"),
}

SYSTEM: dict[str, Entry] = {
    "check": ("system:check", "Check the store for consistency and leftovers (--repair removes them)"),
    "df": ("system:df", "Show sampan disk usage"),
    "info": ("system:info", "Display system-wide information"),
    "prune": ("system:prune", "Remove unused data"),
    "reset": ("system:reset", "Reset sampan storage back to the initial state"),
    "service": ("service:service", "Serve the Docker Engine API on a socket"),
    "events": ("monitoring:events", "Get real time events from the server"),
    "metrics": ("monitoring:metrics", "Print every container's figures in the Prometheus text format"),
}

VOLUME: dict[str, Entry] = {
    "create": ("volumes:create", "Create a volume"),
    "inspect": ("volumes:inspect", "Display detailed information on one or more volumes"),
    "ls": ("volumes:ls", "List volumes"),
    "prune": ("volumes:prune", "Remove unused local volumes"),
    "rm": ("volumes:rm", "Remove one or more volumes"),
}
VOLUME_ALIASES = {"list": "ls", "remove": "rm"}

NETWORK: dict[str, Entry] = {
    "connect": ("networks:connect", "Connect a container to a network"),
    "create": ("networks:create", "Create a network"),
    "disconnect": ("networks:disconnect", "Disconnect a container from a network"),
    "inspect": ("networks:inspect", "Display detailed information on one or more networks"),
    "ls": ("networks:ls", "List networks"),
    "prune": ("networks:prune", "Remove all unused networks"),
    "rm": ("networks:rm", "Remove one or more networks"),
}
NETWORK_ALIASES = {"list": "ls", "remove": "rm"}

CONTAINER: dict[str, Entry] = {
    "attach": ("containers:attach", "Attach local standard input, output, and error streams to a running container"),
    "commit": ("container_files:commit", "Create a new image from a container's changes"),
    "cp": ("container_files:cp", "Copy files/folders between a container and the local filesystem"),
    "create": ("containers:create", "Create a new container"),
    "diff": ("container_files:diff", "Inspect changes to files or directories on a container's filesystem"),
    "exec": ("containers:exec_", "Execute a command in a running container"),
    "export": ("container_files:export", "Export a container's filesystem as a tar archive"),
    "inspect": ("containers:inspect", "Display detailed information on one or more containers"),
    "kill": ("containers:kill", "Kill one or more running containers"),
    "logs": ("containers:logs", "Fetch the logs of a container"),
    "ls": ("containers:ps", "List containers"),
    "pause": ("containers:pause", "Pause all processes within one or more containers"),
    "port": ("containers:port", "List port mappings or a specific mapping for the container"),
    "prune": ("containers:prune", "Remove all stopped containers"),
    "rename": ("containers:rename", "Rename a container"),
    "restart": ("containers:restart", "Restart one or more containers"),
    "rm": ("containers:rm", "Remove one or more containers"),
    "run": ("containers:run", "Create and run a new container from an image"),
    "start": ("containers:start", "Start one or more stopped containers"),
    "stats": ("monitoring:stats", "Display a live stream of container(s) resource usage statistics"),
    "stop": ("containers:stop", "Stop one or more running containers"),
    "top": ("containers:top", "Display the running processes of a container"),
    "unpause": ("containers:unpause", "Unpause all processes within one or more containers"),
    "update": ("containers:update", "Update configuration of one or more containers"),
    "wait": ("containers:wait", "Block until one or more containers stop, then print their exit codes"),
}
CONTAINER_ALIASES = {"list": "ls", "ps": "ls", "remove": "rm"}

GROUPS: dict[str, tuple[dict[str, Entry], dict[str, str], str]] = {
    "container": (CONTAINER, CONTAINER_ALIASES, "Manage containers"),
    "image": (IMAGE, IMAGE_ALIASES, "Manage images"),
    "manifest": (MANIFEST, {}, "Manage Docker image manifests and manifest lists"),
    "network": (NETWORK, NETWORK_ALIASES, "Manage networks"),
    "system": (SYSTEM, {}, "Manage sampan"),
    "volume": (VOLUME, VOLUME_ALIASES, "Manage volumes"),  # no top-level shortcuts, as Docker
}

TOP: dict[str, Entry] = {
    **{name: CONTAINER[name] for name in CONTAINER if name not in ("inspect", "ls", "prune")},
    "ps": CONTAINER["ls"],
    "build": IMAGE["build"],
    "events": SYSTEM["events"],
    "history": IMAGE["history"],
    "images": IMAGE["ls"],
    "import": IMAGE["import"],
    "info": SYSTEM["info"],
    "inspect": ("inspect:inspect", "Return low-level information on sampan objects"),
    "load": IMAGE["load"],
    "login": ("distribution:login", "Log in to a registry"),
    "logout": ("distribution:logout", "Log out from a registry"),
    "pull": IMAGE["pull"],
    "push": IMAGE["push"],
    "rmi": IMAGE["rm"],
    "save": IMAGE["save"],
    "tag": IMAGE["tag"],
    "version": ("system:version", "Show the sampan version information"),
}


def find(words: list[str]) -> tuple[str, str, list[str]] | None:
    """(display name, "module:attribute", remaining args) for the command these words start with."""
    if not words:
        return None
    head, rest = words[0], words[1:]
    if head in GROUPS:
        table, aliases, _ = GROUPS[head]
        if rest and not rest[0].startswith("-"):
            sub = aliases.get(rest[0], rest[0])
            if sub in table:
                return f"{head} {rest[0]}", table[sub][0], rest[1:]
        return None
    if head in TOP:
        return head, TOP[head][0], rest
    return None
