"""A torchrun worker: trains a tiny recipe and saves each rank's final weights (to check that
the ranks agree), and the images each epoch kept when training on the hardest ones. argv: data
root, run folder, recipe name, config overrides (a dict literal)."""
import ast, os, sys, torch
import cifar_lib.train as train_module
from cifar_lib.data import load_cifar10
from cifar_lib.recipes import configure
from cifar_lib.train import fit
root, run_dir, recipe, cfg = sys.argv[1], sys.argv[2], sys.argv[3], ast.literal_eval(sys.argv[4])
kept, real_keep = [], train_module.HardestImages.keep
train_module.HardestImages.keep = lambda self, fraction: (kept.append(real_keep(self, fraction))
                                                          or kept[-1])
result = fit(configure(recipe, batch_size=32, **cfg), *load_cifar10(root), run_dir=run_dir,
             progress=False)
torch.save(result.model.state_dict(), f"{run_dir}/rank{os.environ['RANK']}.pt")
torch.save(kept, f"{run_dir}/kept{os.environ['RANK']}.pt")
