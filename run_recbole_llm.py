"""Command line: ``python run_recbole_llm.py --model=MLTFR --dataset=ml-100k``.

``--config_files="a.yaml b.yaml"`` adds yaml files; any other ``--key=value``
overrides a config key, exactly as RecBole's ``run_recbole.py`` does.
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default="MLTFR", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None,
                        help="space-separated yaml config files")
    args, _ = parser.parse_known_args(argv)

    from recbole_llm.quick_start import run_recbole_llm
    from recbole_llm.utils import get_model

    try:
        get_model(args.model)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = args.config_files.split() if args.config_files else None
    result = run_recbole_llm(model=args.model, dataset=args.dataset, config_file_list=files)
    print(f"best valid: {dict(result['best_valid_result'] or {})}")
    print(f"test result: {dict(result['test_result'] or {})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
