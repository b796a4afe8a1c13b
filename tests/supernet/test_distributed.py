"""supernet.distributed without processes: paths seeded by the step, the ranks' shares, global batch norm."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from search_spaces.shufflenet import ShuffleNetSpace
from supernet.data import make_loader
from supernet.distributed import DistributedContext, ShardSampler, StepSeededSampler, launched_by_torchrun, shard_loader
from supernet.samplers import UniformSampler


def _ctx(rank: int, world: int) -> DistributedContext:
    return DistributedContext(rank, rank, world, torch.device("cpu"), "gloo")


def test_the_path_of_a_step_depends_on_the_step_alone(tiny_space: ShuffleNetSpace) -> None:
    from_start = StepSeededSampler(UniformSampler(tiny_space, 0), seed=3, first_step=0, paths_per_step=2)
    paths = [from_start.sample().arch_id for _ in range(10)]  # 5 steps of 2 paths
    resumed = StepSeededSampler(UniformSampler(tiny_space, 99), seed=3, first_step=3, paths_per_step=2)
    assert [resumed.sample().arch_id for _ in range(4)] == paths[6:10]  # another rank, or a resumed run
    assert len(set(paths)) > 2


def test_the_ranks_batches_make_up_the_single_process_batch() -> None:
    data = TensorDataset(torch.arange(70).float().unsqueeze(1), torch.zeros(70, dtype=torch.long))
    single = [b[0].flatten().tolist() for b in make_loader(data, 8, shuffle=True, seed=5 + 2, drop_last=True)]
    shards = [[b[0].flatten().tolist() for b in shard_loader(data, 8, _ctx(r, 2), seed=5, epoch=2)] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(single) == 8
    for step, batch in enumerate(single):
        assert sorted(shards[0][step] + shards[1][step]) == sorted(batch)
    assert len(ShardSampler(70, _ctx(1, 4), 0, 0)) == 17


def test_torchrun_is_recognised_by_its_variables() -> None:
    assert not launched_by_torchrun({"RANK": "0"})
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    assert launched_by_torchrun(env)


def _global_bn_rank(rank: int, world: int, port: int, x: torch.Tensor, out_dir: str) -> None:
    import torch.distributed as dist

    from supernet.sync_bn import GlobalBatchNorm2d

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    bn = GlobalBatchNorm2d(3)
    share = x.chunk(world)[rank].clone().requires_grad_(True)
    y = bn(share)
    (y * torch.arange(y.numel()).view_as(y).float().sin()).sum().backward()  # a loss that mixes every output
    torch.save({"y": y.detach(), "grad": share.grad, "mean": bn.running_mean, "var": bn.running_var,
                "w": bn.weight.grad}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_global_batch_norm_on_two_processes_equals_one_batch_norm_on_the_whole_batch(tmp_path: object) -> None:
    import socket

    import torch.multiprocessing as tmp_mp
    from torch import nn

    torch.manual_seed(1)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp_mp.spawn(_global_bn_rank, args=(2, port, x, str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(f"{tmp_path}/rank{r}.pt") for r in range(2)]
    whole = x.clone().requires_grad_(True)
    bn = nn.BatchNorm2d(3)
    y = bn(whole)
    (y * torch.cat([torch.arange(p["y"].numel()).view_as(p["y"]).float().sin() for p in parts])).sum().backward()
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([p["grad"] for p in parts]), whole.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[0]["w"] + parts[1]["w"], bn.weight.grad, rtol=1e-4, atol=1e-5)
    for p in parts:
        torch.testing.assert_close(p["mean"], bn.running_mean)
        torch.testing.assert_close(p["var"], bn.running_var)
