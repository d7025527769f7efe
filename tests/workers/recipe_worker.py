"""A torchrun worker: trains a tiny recipe and saves each rank's final weights (to check that
the ranks agree). argv: data root, run folder, recipe name, config overrides (a dict literal)."""
import ast, os, sys, torch
from cifar_lib.data import load_cifar10
from cifar_lib.recipes import configure
from cifar_lib.train import fit
root, run_dir, recipe, cfg = sys.argv[1], sys.argv[2], sys.argv[3], ast.literal_eval(sys.argv[4])
result = fit(configure(recipe, batch_size=32, **cfg), *load_cifar10(root), run_dir=run_dir,
             progress=False)
torch.save(result.model.state_dict(), f"{run_dir}/rank{os.environ['RANK']}.pt")
