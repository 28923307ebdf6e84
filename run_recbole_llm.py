"""Command line: ``python run_recbole_llm.py --model=MLTFR --dataset=ml-100k``.

``--config_files="a.yaml b.yaml"`` adds yaml files; any other ``--key=value``
overrides a config key, exactly as RecBole's ``run_recbole.py`` does.

RecBole's distributed options train one model in several processes (its
``run_recboles`` path): ``--nproc=N`` processes on this machine, ``--world_size``
processes in all (several machines), meeting at ``--ip``/``--port``, this machine's
ranks starting at ``--group_offset``.  Config key ``dist_backend`` (default ``auto``:
nccl on GPUs, gloo on CPUs) picks the process-group backend.

A bad input (a key's value, an unknown model or dataset, a missing or malformed
file, switches that exclude each other) ends the run with one line
``error: <what is wrong>`` on stderr and exit status 2; the checks that need no
data run before the dataset is loaded.  ``--debug`` (or ``--state=DEBUG``, also in
a config file) shows the traceback instead.  Any other exception is a bug and
keeps its traceback.
"""
import argparse
import sys

import yaml

DEBUG_FLAG = "--debug"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other user error
        from recbole_llm.errors import UsageError

        raise UsageError(message)


def _state_is_debug(argv, files):
    """``--state=DEBUG`` on the command line or ``state: DEBUG`` in a config file (the last wins)."""
    state = None
    for path in files or ():
        try:
            with open(path, encoding="utf-8") as f:
                content = yaml.safe_load(f)
            if isinstance(content, dict) and "state" in content:
                state = content["state"]
        except Exception:  # an unreadable file is the error being reported
            pass
    for arg in argv:
        if arg.startswith("--state="):
            state = arg.split("=", 1)[1]
    return str(state).strip("'\"").upper() == "DEBUG"


def _check_overrides(argv):
    """A ``--key=value`` given twice with different values (RecBole raises a SyntaxError)."""
    from recbole_llm.errors import UsageError

    seen = {}
    for arg in argv:
        if arg.startswith("--") and arg.count("=") == 1:
            key, value = arg[2:].split("=")
            if seen.setdefault(key, value) != value:
                raise UsageError(f"--{key} is given twice, as {seen[key]!r} and {value!r}; give it once")


def _run(args):
    from recbole_llm.config import check_config_files
    from recbole_llm.quick_start import run_recbole_llm
    from recbole_llm.registry import check_model_name

    check_model_name(args.model)
    files = args.config_files.split() if args.config_files else None
    check_config_files(files)
    return run_recbole_llm(model=args.model, dataset=args.dataset, config_file_list=files,
                           nproc=args.nproc, world_size=args.world_size, ip=args.ip, port=args.port,
                           group_offset=args.group_offset)


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    RecBole reads its ``--key=value`` overrides from ``sys.argv``: during the run it
    holds ``argv`` (without ``--debug``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default="MLTFR", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None,
                        help="space-separated yaml config files")
    parser.add_argument("--nproc", type=int, default=1, help="the number of processes on this machine")
    parser.add_argument("--ip", type=str, default="localhost", help="the ip of the master node")
    parser.add_argument("--port", type=str, default="5678", help="the port of the master node")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of processes (all machines)")
    parser.add_argument("--group_offset", type=int, default=0, help="the global rank offset of this machine")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the traceback of a configuration error")
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "run_recbole_llm.py"] + argv
    args = None
    try:
        args, _ = parser.parse_known_args(argv)
        _check_overrides(argv)
        result = _run(args)
    except Exception as err:
        from recbole_llm.errors import is_user_error, user_error_message

        files = args.config_files.split() if args is not None and args.config_files else None
        if debug or not is_user_error(err) or _state_is_debug(argv, files):
            raise
        print(f"error: {user_error_message(err)}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved_argv
    print(f"best valid: {dict(result['best_valid_result'] or {})}")
    print(f"test result: {dict(result['test_result'] or {})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
