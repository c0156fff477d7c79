"""The mode a new file should get: 0666 less the process umask, as open() gives
it. Atomic writers create temporaries (mode 0600) and chmod them to this
before renaming them into place."""
import os


def new_file_mode():
    """0o666 & ~umask, the umask read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: the only way to read it is to set it
    os.umask(mask)
    return 0o666 & ~mask
