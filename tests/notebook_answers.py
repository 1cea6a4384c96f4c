"""A learner's answers to every exercise of notebooks 00-09, for the three-way notebook test.

``RIGHT[name]`` is the source of a correct ``my_<name>`` written in a style other than the reference
(loops, einsum, advanced indexing, a DataLoader, hand-written statistics). Each answer counts its
calls in the notebook's ``LEARNER_CALLS``, which proves that later cells ran the learner's code.
:func:`wrong` turns a right answer into a wrong one of a kind no checker lists: the same code with
its result nudged (``+ 0.5`` on floats, ``+ 3`` on ints, ...).
"""

from __future__ import annotations

import re

# In builtins, so that a function notebook 05 loads back from my_mae/ counts in the same place.
COUNTER = ('import builtins as _builtins\n\n'
           'LEARNER_CALLS = _builtins.__dict__.setdefault("LEARNER_CALLS", {})\n\n\n'
           'def _count(name):\n    LEARNER_CALLS[name] = LEARNER_CALLS.get(name, 0) + 1\n\n\n')

RIGHT: dict[str, str] = {
    "encoder_tokens": '''import math


def my_encoder_tokens(img_size, patch_size, mask_ratio):
    _count("encoder_tokens")
    per_side = img_size // patch_size
    return math.floor(per_side * per_side * (1 - mask_ratio)) + 1
''',
    "patchify": '''def my_patchify(imgs, p):
    _count("patchify")
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)
''',
    "sincos_2d": '''def my_sincos_2d(embed_dim, grid_size):
    _count("sincos_2d")
    half = embed_dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half // 2, dtype=torch.float64) / (half / 2.0))
    rows = []
    for r in range(grid_size):
        for c in range(grid_size):
            parts = []
            for pos in (c, r):
                parts += [torch.sin(pos * omega), torch.cos(pos * omega)]
            rows.append(torch.cat(parts))
    return torch.stack(rows).float()
''',
    "random_masking": '''def my_random_masking(x, mask_ratio, noise):
    _count("random_masking")
    n, length, d = x.shape
    keep = int(length * (1 - mask_ratio))
    order = noise.argsort(dim=1)
    restore = torch.empty_like(order)
    restore.scatter_(1, order, torch.arange(length, device=x.device).expand(n, length))
    kept = torch.stack([x[i, order[i, :keep]] for i in range(n)])
    return kept, (restore >= keep).to(x.dtype), restore
''',
    "masked_images": '''def my_masked_images(imgs, mask, p):
    _count("masked_images")
    out = imgs.clone()
    per_row = imgs.shape[3] // p
    for i, l in (mask > 0.5).nonzero().tolist():
        r, c = divmod(l, per_row)
        out[i, :, r * p:(r + 1) * p, c * p:(c + 1) * p] = 0
    return out
''',
    "attention": '''def my_attention(q, k, v):
    _count("attention")
    scores = torch.einsum("nhtd,nhsd->nhts", q, k) * q.shape[-1] ** -0.5
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return torch.einsum("nhts,nhsd->nhtd", weights / weights.sum(dim=-1, keepdim=True), v)
''',
    "block_forward": '''def my_block_forward(block, x):
    _count("block_forward")
    h = block.attn(block.norm1(x))
    x = h + x
    return block.mlp(block.norm2(x)) + x
''',
    "forward_encoder": '''def my_forward_encoder(model, imgs, mask_ratio, noise):
    _count("forward_encoder")
    tokens = model.patch_embed(imgs) + model.pos_embed[:, 1:]
    n, length, d = tokens.shape
    keep = int(length * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    visible = tokens[torch.arange(n, device=tokens.device)[:, None], ids_shuffle[:, :keep]]
    cls = model.cls_token.expand(n, 1, d) + model.pos_embed[:, :1]
    x = torch.cat((cls, visible), dim=1)
    for blk in model.blocks:
        x = blk(x)
    return model.norm(x), (ids_restore >= keep).to(tokens.dtype), ids_restore
''',
    "unshuffle": '''def my_unshuffle(x_visible, mask_token, ids_restore):
    _count("unshuffle")
    n, keep, d = x_visible.shape
    shuffled = torch.cat([x_visible, mask_token.expand(n, ids_restore.shape[1] - keep, d)], dim=1)
    return shuffled[torch.arange(n, device=ids_restore.device)[:, None], ids_restore]
''',
    "forward_decoder": '''def my_forward_decoder(model, latent, ids_restore):
    _count("forward_decoder")
    x = model.decoder_embed(latent)
    cls, visible = x[:, :1], x[:, 1:]
    n, keep, d = visible.shape
    seq = torch.cat([visible, model.mask_token.repeat(n, ids_restore.shape[1] - keep, 1)], 1)
    seq = seq[torch.arange(n, device=seq.device)[:, None], ids_restore]
    x = torch.cat([cls, seq], 1) + model.decoder_pos_embed
    for blk in model.decoder_blocks:
        x = blk(x)
    return model.decoder_pred(model.decoder_norm(x))[:, 1:]
''',
    "normalize_patches": '''def my_normalize_patches(target):
    _count("normalize_patches")
    k = target.shape[-1]
    centred = target - target.sum(-1, keepdim=True) / k
    return centred / torch.sqrt((centred ** 2).sum(-1, keepdim=True) / (k - 1) + 1e-6)
''',
    "mae_loss": '''def my_mae_loss(target, pred, mask, norm_pix_loss):
    _count("mae_loss")
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = torch.nn.functional.mse_loss(pred, target, reduction="none").mean(-1)
    return (per_patch * mask).sum() / mask.sum()
''',
    "mae_forward": '''def my_mae_forward(model, imgs, noise):
    _count("mae_forward")
    latent, mask, ids_restore = earlier.forward_encoder(model, imgs, model.mask_ratio, noise)
    pred = earlier.forward_decoder(model, latent, ids_restore)
    return mae_loss_fn(earlier.patchify(imgs, model.patch_size), pred, mask, model.norm_pix_loss), pred, mask
''',
    "scaled_lr": '''def my_scaled_lr(blr, batch_size, accum_iter=1):
    _count("scaled_lr")
    return blr / 256 * batch_size * accum_iter
''',
    "lr_schedule": '''import math


def my_lr_schedule(step, base_lr, total_steps, warmup_steps, min_lr=0.0):
    _count("lr_schedule")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step / warmup_steps)
    t = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(t * math.pi))
''',
    "train_step": '''def my_train_step(model, optimizer, schedule, imgs, noise):
    _count("train_step")
    optimizer.zero_grad()
    out = model(imgs, noise=noise)
    out["loss"].backward()
    optimizer.step()
    schedule.step()
    return float(out["loss"].detach())
''',
    "train_one_epoch": '''def my_train_one_epoch(model, optimizer, schedule, loader, epoch, train_step):
    _count("train_one_epoch")
    model.train()
    loader.set_epoch(epoch)
    out, k = [], 0
    while k < len(loader):
        imgs, _labels, seed = loader.batch(k)
        noise = model.mask_noise(len(imgs), generator=torch.Generator().manual_seed(seed + 1))
        out.append(train_step(model, optimizer, schedule, imgs, noise))
        k += 1
    return out
''',
    "mean_pool": '''def my_mean_pool(latent):
    _count("mean_pool")
    return latent.narrow(1, 1, latent.shape[1] - 1).sum(1) / (latent.shape[1] - 1)
''',
    "linear_probe": '''import torch.utils.data


def my_linear_probe(train_x, train_y, test_x, epochs=30, batch_size=1024, lr=1e-3, seed=0):
    _count("linear_probe")
    torch.manual_seed(seed)
    probe = torch.nn.Sequential(torch.nn.BatchNorm1d(train_x.shape[1], affine=False, eps=1e-6),
                                torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1))
    torch.nn.init.trunc_normal_(probe[1].weight, std=0.01)
    torch.nn.init.zeros_(probe[1].bias)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_x, train_y), batch_size=batch_size,
                                       shuffle=True, generator=torch.Generator().manual_seed(seed + 7))
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(data))
    for _ in range(epochs):
        for x, y in data:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(probe(x), y).backward()
            optimizer.step()
            schedule.step()
    probe.eval()
    with torch.no_grad():
        return probe(test_x).argmax(dim=1)
''',
    "knn": '''def my_knn(train_x, train_y, test_x, k=20, temperature=0.07):
    _count("knn")
    a = test_x / test_x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = train_x / train_x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, idx = torch.topk(a @ b.T, k, dim=1)
    onehot = torch.nn.functional.one_hot(train_y[idx], int(train_y.max()) + 1).to(values.dtype)
    return (onehot * (values / temperature).exp()[..., None]).sum(1).argmax(1)
''',
    "classifier_head": '''def my_classifier_head(x, fc_norm, head):
    _count("classifier_head")
    return head(fc_norm(x[:, 1:].sum(1) / (x.shape[1] - 1)))
''',
    "layer_decay_scales": '''def my_layer_decay_scales(model, decay):
    _count("layer_decay_scales")
    depth, result = len(model.blocks), {}
    for name, _ in model.named_parameters():
        first = name.split(".")[0]
        layer = 0 if first in ("cls_token", "pos_embed", "patch_embed") else (
            int(name.split(".")[1]) + 1 if first == "blocks" else depth + 1)
        result[name] = decay ** (depth + 1 - layer)
    return result
''',
    "finetune_steps": '''def my_finetune_steps(model, loader, optimizer, schedule, steps, label_smoothing=0.1):
    _count("finetune_steps")
    device = next(model.parameters()).device
    model.train()
    losses = []
    for step in range(steps):
        epoch, k = divmod(step, len(loader))
        if k == 0:
            loader.set_epoch(epoch)
        imgs, labels, _ = loader.batch(k)
        loss = torch.nn.functional.cross_entropy(model(imgs.to(device)), labels.to(device),
                                                 label_smoothing=label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses
''',
    "forward_flops": '''def my_forward_flops(config, mask_ratio):
    _count("forward_flops")
    length = (config.img_size // config.patch_size) ** 2
    keep = int(length * (1 - mask_ratio))
    P = config.patch_size ** 2 * config.in_chans
    D, Dd = config.embed_dim, config.decoder_embed_dim

    def blk(T, d):
        return 2 * T * 4 * d * d + 4 * T * T * d + 4 * T * d * int(config.mlp_ratio * d)

    total = 2 * length * P * D + 2 * (1 + keep) * D * Dd + 2 * length * Dd * P
    total += sum(blk(1 + keep, D) for _ in range(config.encoder_depth))
    return total + sum(blk(1 + length, Dd) for _ in range(config.decoder_depth))
''',
    "standard_error": '''def my_standard_error(accuracy, n):
    _count("standard_error")
    return (accuracy * (1 - accuracy) / n) ** 0.5
''',
    "difference_se": '''def my_difference_se(a, b):
    _count("difference_se")

    def var(xs):
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    return (var(a) / len(a) + var(b) / len(b)) ** 0.5
''',
    # the optional stretch exercises of 01-07
    "sincos_grid": '''def my_sincos_grid(embed_dim, grid_h, grid_w):
    _count("sincos_grid")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    row = torch.arange(grid_h, dtype=torch.float64).repeat_interleave(grid_w)[:, None] * omega
    col = torch.arange(grid_w, dtype=torch.float64).repeat(grid_h)[:, None] * omega
    return torch.cat([col.sin(), col.cos(), row.sin(), row.cos()], dim=1).to(torch.float32)
''',
    "block_mask": '''import math


def my_block_mask(order, grid_h, grid_w, block, mask_ratio):
    _count("block_mask")
    length = grid_h * grid_w
    todo = length - math.floor(length * (1 - mask_ratio))
    per_row = math.ceil(grid_w / block)
    mask = torch.zeros(order.shape[0], length)
    for i, squares in enumerate(order.tolist()):
        left = todo
        for s in squares:
            top, first = divmod(s, per_row)
            for r in range(top * block, min((top + 1) * block, grid_h)):
                for c in range(first * block, min((first + 1) * block, grid_w)):
                    if left > 0:
                        mask[i, r * grid_w + c] = 1.0
                        left -= 1
    return mask
''',
    "attention_rollout": '''def my_attention_rollout(weights):
    _count("attention_rollout")
    t = weights[0].shape[-1]
    total = torch.eye(t)
    for w in weights:
        a = w.sum(dim=1) / w.shape[1] + torch.eye(t)
        total = torch.einsum("nij,njk->nik", a / a.sum(dim=2, keepdim=True), total.expand(w.shape[0], t, t))
    return total
''',
    "scatter_tokens": '''def my_scatter_tokens(x_visible, ids_keep, mask_token, length):
    _count("scatter_tokens")
    n, keep, d = x_visible.shape
    rows = torch.arange(n, device=ids_keep.device)[:, None].expand(n, keep)
    out = mask_token.reshape(1, 1, d).repeat(n, length, 1)
    return out.index_put((rows, ids_keep), x_visible)
''',
    "unnormalize_pred": '''def my_unnormalize_pred(pred, target):
    _count("unnormalize_pred")
    k = target.shape[-1]
    mean = target.sum(dim=-1, keepdim=True) / k
    std = (((target - mean) ** 2).sum(dim=-1, keepdim=True) / (k - 1) + 1e-6).sqrt()
    return torch.addcmul(mean, pred, std)
''',
    "accumulate_grads": '''def my_accumulate_grads(model, imgs, noise, accum_iter):
    _count("accumulate_grads")
    total = 0.0
    for i in range(accum_iter):
        x, z = imgs[i::accum_iter], noise[i::accum_iter]  # any equal split works if each image keeps its noise
        share = x.shape[0] / imgs.shape[0]
        loss = model(x, noise=z)["loss"] * share
        loss.backward()
        total += loss.item()
    return total
''',
    "cutmix": '''def my_cutmix(images, labels, perm, box, num_classes):
    _count("cutmix")
    top, left, height, width = box
    rows = torch.arange(images.shape[-2])[:, None]
    cols = torch.arange(images.shape[-1])[None, :]
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)  # [H, W]
    a = inside.float().mean()
    eye = torch.eye(num_classes)
    return torch.where(inside, images[perm], images), (1 - a) * eye[labels] + a * eye[labels[perm]]
''',
}

# Nudges a right result into a wrong one that no checker names: floats and tensors move by 0.5, ints by 3,
# class indices by one, the first item of a tuple, every item of a list or dict.
NUDGE = '''def _nudge(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 3
    if isinstance(value, float):
        return value * 1.1 + 0.5
    if isinstance(value, torch.Tensor):
        return value + 1 if not value.dtype.is_floating_point else value + 0.5
    if isinstance(value, tuple):
        return (_nudge(value[0]), *value[1:])
    if isinstance(value, list):
        return [_nudge(v) for v in value]
    if isinstance(value, dict):
        return {k: _nudge(v) for k, v in value.items()}
    return value


'''


def right(name: str) -> str:
    """The cell that replaces the stub of ``my_<name>`` with a right answer."""
    return COUNTER + RIGHT[name]


def wrong(name: str) -> str:
    """The cell that replaces the stub with a wrong answer: the right one, its result nudged."""
    inner = re.sub(rf"^def my_{name}\(", f"def _right_{name}(", RIGHT[name], flags=re.M)
    return (COUNTER + NUDGE + inner + f"\n\ndef my_{name}(*args, **kwargs):\n"
            f"    return _nudge(_right_{name}(*args, **kwargs))\n")
