"""Hyper-parameter tuning: ``python run_hyper.py --model=MLTFR --dataset=ml-100k --params_file=properties/hyper/mltfr.hyper``.

RecBole's ``run_hyper.py`` for this plug-in: every trial is
:func:`recbole_llm.quick_start.objective_function` (any RecBole model, every model
of this package, each with its own trainer).

* ``--tool hyperopt`` (default): RecBole's ``HyperTuning`` with ``--algo``
  ``exhaustive`` (default, every combination of the ``choice`` lines; no early stop
  unless ``--early_stop`` is given), ``random`` or ``bayes`` (TPE), ``--max_evals``
  trials (default 100; with ``exhaustive`` it caps the grid).
* ``--tool ray``: Ray Tune (``tune.run``): ``exhaustive`` is a grid search, ``random``
  samples ``--max_evals`` trials, ``bayes`` is Ray's ``HyperOptSearch``; trials run in
  parallel (one CPU each, one GPU each where there is one), each with its own
  checkpoint folder; ``--early_stop`` does not apply.  Ray 2.6.3's ``tune.run`` needs
  ``pyarrow``: ``pip install "pyarrow>=6.0.1,<15"`` (extra ``ray-tune``; pyarrow 26
  requires numpy 2, which ray 2.6.3 cannot take).

The params file is RecBole's format, one parameter a line::

    learning_rate loguniform -8,0
    hidden_size choice [32,64]
    dropout_prob uniform 0.1,0.5
    n_layers quniform 1,3,1

``loguniform`` takes hyperopt's bounds, logarithms (here exp(-8) .. 1); ``quniform``
gives floats, as hyperopt does; a value loses its spaces; lines with fewer than three
fields are skipped, and here a line starting with ``#`` is a comment.  Only ``choice``
lines make a grid for ``--algo exhaustive``.  ``--config_files="a.yaml b.yaml"`` are
fixed for every trial; any other ``--key=value`` is a fixed config value below the
tuned ones.  Prints the best parameters and their result and writes every trial
to ``--output_file`` (RecBole's ``export_result`` format).
"""
import argparse
import ast
import itertools
import math
import os
import sys

ALGOS = ("exhaustive", "random", "bayes")
TOOLS = ("hyperopt", "ray")
PARAM_TYPES = ("choice", "uniform", "quniform", "loguniform")


class UsageError(ValueError):
    """A params file, ``--algo`` or ``--tool`` that cannot run (the CLI prints it and exits 2)."""


def read_params_file(path):
    """``[(name, type, values)]`` of a RecBole params file; ``values`` is the choice list or the bounds."""
    params = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.strip().split(" ")
            if line.lstrip().startswith("#") or len(fields) < 3:
                continue
            name, kind, text = fields[0], fields[1], "".join(fields[2:])
            if kind not in PARAM_TYPES:
                raise UsageError(f"{path}:{number}: parameter type {kind!r} is not one of {PARAM_TYPES}")
            try:
                if kind == "choice":
                    values = ast.literal_eval(text)
                    if not isinstance(values, (list, tuple)) or not values:
                        raise ValueError("a choice needs a non-empty list")
                    values = list(values)
                else:
                    values = [float(v) for v in text.split(",")]
                    if len(values) != (3 if kind == "quniform" else 2):
                        raise ValueError(f"{kind} needs {'low,high,q' if kind == 'quniform' else 'low,high'}")
            except (ValueError, SyntaxError) as err:
                raise UsageError(f"{path}:{number}: cannot read {name} {kind} {text!r}: {err}") from None
            params.append((name, kind, values))
    if not params:
        raise UsageError(f"{path} holds no parameter line ('name choice [..]', 'name loguniform a,b', ...)")
    return params


def hyperopt_space(params):
    """hyperopt's search space of ``params`` (what RecBole's ``HyperTuning`` builds from the same file)."""
    from hyperopt import hp

    space = {}
    for name, kind, values in params:
        space[name] = hp.choice(name, values) if kind == "choice" else getattr(hp, kind)(name, *values)
    return space


def ray_space(params, algo):
    """Ray Tune's ``config`` of ``params``: grid searches for ``exhaustive``, samplers otherwise."""
    from ray import tune

    space = {}
    for name, kind, values in params:
        if kind == "choice":
            space[name] = tune.grid_search(values) if algo == "exhaustive" else tune.choice(values)
        elif kind == "loguniform":  # hyperopt's bounds are logarithms
            space[name] = tune.loguniform(math.exp(values[0]), math.exp(values[1]))
        else:
            space[name] = getattr(tune, kind)(*values)
    return space


def check_exhaustive(params):
    continuous = [name for name, kind, _ in params if kind != "choice"]
    if continuous:
        raise UsageError(f"--algo exhaustive needs 'choice' parameters only; {continuous} are continuous: "
                         "use --algo random or --algo bayes")


def grid_size(params):
    return math.prod(len(values) for _, kind, values in params if kind == "choice")


class Objective:
    """``objective_function`` with fixed config values under the sampled ones (what ``HyperTuning`` calls)."""

    def __init__(self, fixed, saved=True):
        self.fixed = dict(fixed)
        self.saved = saved

    def __call__(self, config_dict=None, config_file_list=None):
        from recbole_llm.quick_start import objective_function

        return objective_function(dict(self.fixed, **(config_dict or {})), config_file_list, saved=self.saved)


def probe_config(fixed, config_files, params):
    """The fixed part's Config (fails early on a bad model or file); warns about params it does not know."""
    from recbole_llm.config import Config

    config = Config(config_dict=dict(fixed), config_file_list=config_files, command_line=False)
    unknown = [name for name, _, _ in params if name not in config]
    if unknown:
        print(f"warning: {unknown} are not keys of {config['model']}'s config (typo?); "
              "they are passed to every trial anyway", file=sys.stderr)
    return config


def grid_algo(params):
    """hyperopt ``algo`` that walks the grid of ``params`` (choices only) in order, each point once.

    RecBole's own ``exhaustive_search`` samples with ``numpy.random.RandomState``, which the
    hyperopt that runs on this numpy (0.2.7+: ``Generator.integers``) cannot draw from.
    """
    from hyperopt.base import miscs_update_idxs_vals

    names = [name for name, _, _ in params]
    grid = list(itertools.product(*(range(len(values)) for _, _, values in params)))

    def suggest(new_ids, domain, trials, seed):
        done = {tuple(trial["misc"]["vals"][name][0] for name in names) for trial in trials.trials}
        todo = (point for point in grid if point not in done)
        docs = []
        for new_id in new_ids:
            point = next(todo, None)
            if point is None:  # the grid is done: hyperopt stops
                break
            misc = dict(tid=new_id, cmd=domain.cmd, workdir=domain.workdir)
            miscs_update_idxs_vals([misc], {name: [new_id] for name in names},
                                   {name: [index] for name, index in zip(names, point)})
            docs.extend(trials.new_trial_docs([new_id], [None], [domain.new_result()], [misc]))
        return docs

    return suggest


def hyperopt_tune(args, params, fixed, config_files):
    from recbole.trainer import HyperTuning

    if args.algo == "exhaustive":
        evals = grid_size(params) if args.max_evals is None else min(grid_size(params), args.max_evals)
        algo = grid_algo(params)
    else:
        evals = 100 if args.max_evals is None else args.max_evals
        algo = args.algo
    early_stop = args.early_stop if args.early_stop is not None else (evals if args.algo == "exhaustive" else 10)
    hp = HyperTuning(Objective(fixed), space=hyperopt_space(params), fixed_config_file_list=config_files,
                     algo=algo, max_evals=evals, early_stop=early_stop)
    hp.run()
    hp.export_result(output_file=args.output_file)
    return hp.best_params, hp.params2result[hp.params2str(hp.best_params)], hp.params2result


def ray_tune(args, params, fixed, config_files, probe):
    try:
        import pyarrow  # noqa: F401  (ray 2.6.3's tune.run reads its results through pyarrow.fs)
    except ImportError as err:
        raise UsageError('--tool ray needs pyarrow: pip install "pyarrow>=6.0.1,<15" (ray 2.6.3\'s tune.run '
                         "reads trial results through pyarrow.fs; pyarrow 26 requires numpy 2, which ray "
                         f"2.6.3 cannot take) [{err}]") from None
    import ray
    import torch
    from ray import tune
    from ray.air import session
    from recbole.trainer import HyperTuning

    bigger = probe["valid_metric_bigger"]
    checkpoint_dir = os.path.abspath(probe["checkpoint_dir"])
    objective = Objective(fixed)

    def trainable(sampled):
        trial_fixed = {"checkpoint_dir": os.path.join(checkpoint_dir, session.get_trial_id())}
        gpu_ids = ray.get_gpu_ids()
        if gpu_ids:  # RecBole sets CUDA_VISIBLE_DEVICES from gpu_id: give it the GPU Ray assigned
            trial_fixed["gpu_id"] = ",".join(str(gpu) for gpu in gpu_ids)
        result = objective(dict(trial_fixed, **sampled), config_files)
        session.report({
            "best_valid_score": float(result["best_valid_score"]),
            "best_valid_result": dict(result["best_valid_result"] or {}),
            "test_result": dict(result["test_result"] or {}),
        })

    mode = "max" if bigger else "min"
    search_alg, num_samples = None, 1
    if args.algo == "exhaustive":
        check_exhaustive(params)
        space = ray_space(params, "exhaustive")
    else:
        num_samples = 100 if args.max_evals is None else args.max_evals
        if args.algo == "random":
            space = ray_space(params, "random")
        else:
            from ray.tune.search.hyperopt import HyperOptSearch

            search_alg = HyperOptSearch(space=hyperopt_space(params), metric="best_valid_score", mode=mode)
            space = {}
    if __name__ != "__main__":  # imported (tests, a user's script): Ray workers may not find this file
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        analysis = tune.run(
            trainable, config=space, search_alg=search_alg, num_samples=num_samples,
            metric="best_valid_score", mode=mode, chdir_to_trial_dir=False,
            resources_per_trial={"cpu": 1, "gpu": 1 if torch.cuda.is_available() else 0},
            local_dir=os.path.abspath("ray_log"), raise_on_failed_trial=False, verbose=1,
        )
    finally:
        if started:
            ray.shutdown()
    params2result = {}
    for trial in analysis.trials:
        if trial.status == "ERROR" or "best_valid_score" not in (trial.last_result or {}):
            print(f"trial {trial.trial_id} {trial.config} failed: {trial.error_file}", file=sys.stderr)
            continue
        sampled = {name: trial.config[name] for name, _, _ in params}
        params2result[HyperTuning.params2str(sampled)] = {
            "model": probe["model"],
            "best_valid_score": trial.last_result["best_valid_score"],
            "valid_score_bigger": bigger,
            "best_valid_result": trial.last_result["best_valid_result"],
            "test_result": trial.last_result["test_result"],
        }
    if not params2result:
        raise RuntimeError("every Ray trial failed (see the errors above)")
    export_result(params2result, args.output_file)
    best = analysis.get_best_trial("best_valid_score", mode, "last")
    best_params = {name: best.config[name] for name, _, _ in params}
    return best_params, params2result[HyperTuning.params2str(best_params)], params2result


def export_result(params2result, output_file):
    """RecBole's ``HyperTuning.export_result`` format: each trial's params, valid and test result."""
    from recbole.utils.utils import dict2str

    with open(output_file, "w", encoding="utf-8") as fp:
        for params, result in params2result.items():
            fp.write(params + "\n")
            fp.write("Valid result:\n" + dict2str(result["best_valid_result"]) + "\n")
            fp.write("Test result:\n" + dict2str(result["test_result"]) + "\n\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (or set in a config file)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name (or set in a config file)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated fixed yaml config files")
    parser.add_argument("--params_file", type=str, required=True, help="parameters file (RecBole's format)")
    parser.add_argument("--output_file", type=str, default="hyper_example.result", help="every trial's results")
    parser.add_argument("--tool", type=str.lower, default="hyperopt", choices=TOOLS, help="tuning tool")
    parser.add_argument("--algo", type=str, default="exhaustive", choices=ALGOS, help="search algorithm")
    parser.add_argument("--max_evals", type=int, default=None,
                        help="trials (random/bayes: default 100; exhaustive: caps the grid)")
    parser.add_argument("--early_stop", type=int, default=None,
                        help="hyperopt: stop after this many trials without improvement "
                             "(default 10; exhaustive: none)")
    args, extra = parser.parse_known_args(argv)
    fixed = {}
    for arg in extra:
        key, sep, value = arg[2:].partition("=")
        if not arg.startswith("--") or not sep or not key:
            parser.error(f"unrecognised argument {arg!r} (config values are --key=value)")
        fixed[key] = value  # a string: RecBole's Config converts it as it converts the command line
    for key in ("model", "dataset"):
        if getattr(args, key) is not None:
            fixed[key] = getattr(args, key)
    return args, fixed


def main(argv=None):
    """Tune; returns ``(best_params, best_result, params2result)`` (the CLI exits 0)."""
    args, fixed = parse_args(sys.argv[1:] if argv is None else argv)
    params = read_params_file(args.params_file)
    if args.algo == "exhaustive":
        check_exhaustive(params)
    config_files = args.config_files.split() if args.config_files else None
    if config_files:
        config_files = [os.path.abspath(path) for path in config_files]
    probe = probe_config(fixed, config_files, params)
    fixed.setdefault("model", probe["model"])
    fixed.setdefault("dataset", probe["dataset"])
    if args.tool == "ray":
        best_params, best_result, params2result = ray_tune(args, params, fixed, config_files, probe)
    else:
        best_params, best_result, params2result = hyperopt_tune(args, params, fixed, config_files)
    print(f"parameter sets tried: {len(params2result)} (written to {args.output_file})")
    print("best params: ", best_params)
    print("best result: ")
    print(best_result)
    return best_params, best_result, params2result


if __name__ == "__main__":
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
