"""Quickstart: a small CNN becomes a task-conditioned HyperDNN, trained on synthetic data."""
import torch
from torch import nn

import hyperdnn as hd

torch.manual_seed(0)
cnn = nn.Sequential(                                # any nn.Module, left untouched
    nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
)
model = hd.HyperDNN(
    cnn,
    inputs=hd.TaskEmbedding(num_tasks=3, dim=16),   # H is conditioned on a task id
    outputs=hd.ChunkWise(chunk_size=512, chunk_dim=16),
    body=hd.MLP(hidden=(64, 64)),
    generate=(nn.Conv2d, nn.Linear),                # BatchNorm stays an ordinary parameter
)
print(model.summary())

# Three synthetic tasks: is the bright square in the top, left or top-left half of a 12x12 image?
x = torch.rand(384, 1, 12, 12) * 0.3
pos = torch.randint(0, 8, (384, 2))
for i, (r, c) in enumerate(pos.tolist()):
    x[i, 0, r:r + 4, c:c + 4] += 1.0
labels = [(pos[:, 0] < 4).long(), (pos[:, 1] < 4).long(), ((pos[:, 0] < 4) & (pos[:, 1] < 4)).long()]

opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for step in range(241):
    task = step % 3
    loss = nn.functional.cross_entropy(model(x, task=task), labels[task])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step:3d}  task {task}  loss {loss.item():.3f}")

model.eval()
with torch.no_grad():
    acc = [(model(x, task=t).argmax(1) == labels[t]).float().mean().item() for t in range(3)]
print("train accuracy per task:", [f"{a:.2f}" for a in acc])
hd.save(model, "runs/quickstart")                       # safetensors + JSON
restored = hd.load("runs/quickstart", target=cnn).eval()
print("restored model agrees:", torch.equal(restored(x[:8], task=2), model(x[:8], task=2)))
