"""ServerApp and ClientApp of the federated models on Flower (Message API), built on the in-process pieces.

Job: a JSON file (absolute path in run config ``job``) with the model name,
dataset, the user's config dict and where to write the result.  Protocol:

1. the server asks every node (message type ``query``) for the user ids it holds;
2. each round it samples user ids exactly like the in-process trainer
   (:func:`~recbole_llm.federated.sampling.sample_clients` over the sorted ids,
   generator seeded by config ``seed``), sends each node the global parameters
   (``ArrayRecord``) and its sampled ids (``ConfigRecord``) as a ``train`` message;
3. a node trains those users as clients with the same engine code and replies with
   the weighted mean of their models and its total FedAvg weight; the server checks each
   reply (:meth:`~recbole_llm.federated.server.FedAvgServer.check`) and aggregates them
   with Flower's own strategy for config ``server_optimizer``
   (:mod:`recbole_llm.federated.flower.strategies`: exact per-user FedAvg, then the step);
4. after the last round the server writes the global parameters to the job's ``output``.

Nodes get their partition from ``--node-config``: users whose index among the
sorted client ids is ``partition-id`` modulo ``num-partitions``.  Sequences and
views never leave a node; messages carry parameters, ids and scalars only.
"""
import json

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from recbole.data import create_dataset, data_preparation

from recbole_llm.config import Config
from recbole_llm.federated.client_data import build_clients
from recbole_llm.federated.client_update import LocalTrainingSpec, trainable_parameters
from recbole_llm.federated.engines import make_engine
from recbole_llm.federated.sampling import sample_clients
from recbole_llm.federated.flower.strategies import WEIGHT_KEY, flower_server_step, flower_strategy
from recbole_llm.federated.server import FedAvgServer, ParameterUpdate, weighted_mean
from recbole_llm.federated.server_optimizers import ServerOptimizerSpec
from recbole_llm.model.lumos.views import build_view_generator, prepare_views
from recbole_llm.quick_start import build_model

server_app = ServerApp()
client_app = ClientApp()


def load_job(context):
    with open(context.run_config["job"], encoding="utf-8") as f:
        return json.load(f)


def build_federated_model(job):
    """``(config, train split, model)`` of a job, as the in-process trainer builds them."""
    # flwr's own command-line flags are not config keys
    config = Config(model=job["model"], dataset=job["dataset"], config_dict=job["config_dict"],
                    command_line=False)
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    return config, train, build_model(config, train)


def node_clients(job, context, train, model):
    clients = build_clients(train.dataset, model.max_seq_length, model.causal)
    part, parts = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    return {c.user_id: c for i, c in enumerate(clients) if i % parts == part}


@client_app.query()
def client_ids(msg: Message, context: Context) -> Message:
    job = load_job(context)
    _, train, model = build_federated_model(job)
    ids = sorted(node_clients(job, context, train, model))
    return Message(RecordDict({"ids": ConfigRecord({"user-ids": ids})}), reply_to=msg)


@client_app.train()
def train_clients(msg: Message, context: Context) -> Message:
    job = load_job(context)
    config, train, model = build_federated_model(job)
    torch.manual_seed(int(msg.content["round"]["seed"]))
    mine = node_clients(job, context, train, model)
    cohort = [mine[u] for u in msg.content["round"]["user-ids"]]
    if model.use_views:  # views are regenerated from per-user seeds: the same as a cached copy
        prepare_views(cohort, build_view_generator(config, train.dataset), model.max_seq_length,
                      int(msg.content["round"]["round"]))
    global_params = msg.content["global"].to_torch_state_dict()
    engine = make_engine(job.get("engine", "sequential"), model, LocalTrainingSpec.from_config(config))
    updates, loss = engine.run_round(global_params, cohort)
    update = weighted_mean(updates)
    content = RecordDict({
        "update": ArrayRecord(update.tensors),
        "stats": MetricRecord({WEIGHT_KEY: update.weight, "num-clients": update.num_clients, "loss": loss}),
    })
    return Message(content, reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    job = load_job(context)
    config, _, model = build_federated_model(job)
    nodes = []
    while len(nodes) < int(job["num_nodes"]):
        nodes = sorted(grid.get_node_ids())
    replies = grid.send_and_receive([grid.create_message(RecordDict(), "query", n, "ids") for n in nodes])
    owner = {}
    for reply in replies:
        for uid in reply.content["ids"]["user-ids"]:
            owner[int(uid)] = reply.metadata.src_node_id
    ids = sorted(owner)
    server = FedAvgServer(trainable_parameters(model))
    strategy = flower_strategy(ServerOptimizerSpec.from_config(config))
    generator = torch.Generator().manual_seed(int(config["seed"]))
    log = []
    for rnd in range(int(config["rounds"])):
        sampled = [ids[i] for i in sample_clients(len(ids), config["client_fraction"], generator)]
        messages = []
        for node in nodes:
            users = [u for u in sampled if owner[u] == node]
            if users:
                content = RecordDict({"global": ArrayRecord(server.broadcast()),
                                      "round": ConfigRecord({"user-ids": users, "seed": int(config["seed"]) + rnd,
                                                       "round": rnd})})
                messages.append(grid.create_message(content, "train", node, str(rnd)))
        replies = list(grid.send_and_receive(messages))
        updates = []
        for i, reply in enumerate(replies):
            if reply.has_error():
                raise RuntimeError(f"node {reply.metadata.src_node_id} failed: {reply.error}")
            stats = reply.content["stats"]
            updates.append(ParameterUpdate(reply.content["update"].to_torch_state_dict(), stats["weight"],
                                           int(stats["num-clients"]), source=f"node {reply.metadata.src_node_id}"))
            server.check(updates[-1], i)
        if sum(u.num_clients for u in updates) != len(sampled):
            raise RuntimeError(f"round {rnd}: {len(updates)} replies for {len(sampled)} sampled users")
        current = {k: v.numpy() for k, v in server.global_params.items()}
        new = flower_server_step(strategy, current, replies, rnd + 1)  # Flower's FedAvg/FedAvgM/FedAdam/FedYogi
        server.global_params = {k: torch.from_numpy(new[k]).to(v.dtype) for k, v in server.global_params.items()}
        log.append({"round": rnd, "clients": len(sampled), "nodes": len(messages)})
    torch.save({"params": server.broadcast(), "rounds": log}, job["output"])
