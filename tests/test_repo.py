"Repository contracts: generated files agree with their sources, requirements are one list of ranges with tested pins, the public API imports."
import configparser, importlib, os, re, shutil, subprocess, sys, tomllib
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))

def test_readme_is_generated_from_index():
    from make_readme import readme_text
    assert (ROOT / 'README.md').read_text() == readme_text(), \
        'README.md differs from nbs/index.ipynb: run `python tools/make_readme.py`'

def test_readme_quick_start_is_the_two_commands():
    text = (ROOT / 'README.md').read_text()
    assert 'make book' in text and 'make test' in text

def test_committed_modules_match_notebooks(tmp_path):
    "robust_nb/ is exactly what nbdev_export makes of nbs/ (never edited by hand)."
    for p in ('settings.ini', 'nbs', 'robust_nb'): 
        (shutil.copytree if (ROOT / p).is_dir() else shutil.copy)(ROOT / p, tmp_path / p)
    for f in (tmp_path / 'robust_nb').rglob('*.py'):      # every exported module, robust_nb/experiments/ too
        if f.name != '__init__.py': f.unlink()
    exe = Path(sys.executable).parent / 'nbdev_export'
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}   # nbdev_export does nothing when IN_TEST is set
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True, env=env)
    rel = lambda root: {str(f.relative_to(root)): f.read_text() for f in root.rglob('*.py') if '__pycache__' not in f.parts}
    ours, theirs = rel(ROOT / 'robust_nb'), rel(tmp_path / 'robust_nb')
    assert sorted(ours) == sorted(theirs), 'modules without a notebook, or notebooks whose module is not committed'
    stale = [n for n in ours if ours[n] != theirs[n]]
    assert not stale, f'{stale} differ from what their notebooks export: run nbdev_export and commit both'

def _project() -> dict: return tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']

def _name(req:str) -> str: return re.split(r'[<>=!~ ;\[]', req, maxsplit=1)[0].lower().replace('_', '-')

def _constraints() -> dict:
    lines = [l.strip() for l in (ROOT / 'constraints.txt').read_text().splitlines() if l.strip() and not l.startswith('#')]
    return {_name(l): l.split('==')[1] for l in lines}

def test_one_list_of_requirements():
    "pyproject.toml is the only list; settings.ini (read by nbdev's release tools only) holds none."
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    extra = [k for k in ('requirements', 'dev_requirements', 'pip_requirements') if k in cfg['DEFAULT']]
    assert extra == [], f"settings.ini lists {extra}; the requirements live in pyproject.toml only"

def test_runtime_requirements_are_ranges():
    "`pip install robust_nb` into a research environment keeps its torch: no pins, no book or test tools at runtime."
    deps = _project()['dependencies']
    assert [r for r in deps if '==' in r] == [], f"pinned runtime requirements: {[r for r in deps if '==' in r]}"
    names = {_name(r) for r in deps}
    assert {'torch', 'torchvision'} <= names, names
    tools = names & {'jupyterlab', 'nbdev', 'nbconvert', 'execnb', 'pytest', 'hypothesis', 'playwright', 'torchattacks'}
    assert tools == set(), f"book/test tools among the runtime requirements: {sorted(tools)}"
    extras = _project()['optional-dependencies']
    assert {'book', 'test', 'dev'} <= set(extras), sorted(extras)
    assert {_name(r) for r in extras['book']} >= {'jupyterlab', 'nbdev', 'nbconvert', 'execnb'}

def test_constraints_pin_every_requirement_within_its_range():
    from importlib.metadata import version
    from packaging.requirements import Requirement
    pins = _constraints()
    reqs = [Requirement(r) for rs in [_project()['dependencies'], *_project()['optional-dependencies'].values()] for r in rs]
    reqs = [r for r in reqs if _name(r.name) != 'robust-nb']
    unpinned = sorted({r.name for r in reqs if _name(r.name) not in pins})
    assert unpinned == [], f"constraints.txt has no pin for {unpinned}"
    outside = [(str(r), pins[_name(r.name)]) for r in reqs if not r.specifier.contains(pins[_name(r.name)], prereleases=True)]
    assert outside == [], f"pins outside their pyproject.toml range: {outside}"
    from importlib.metadata import PackageNotFoundError
    def installed(name):
        try: return version(name)
        except PackageNotFoundError: return None       # an extra this environment did not install (bench: `make bench` does)
    dev = [Requirement(r) for r in _project()['dependencies'] + [r for x in ('book', 'test') for r in _project()['optional-dependencies'][x]]]
    missing = sorted(r.name for r in dev if installed(r.name) is None)
    assert missing == [], f"`make install` (the dev extras) left out {missing}"
    stale = [(r.name, pins[_name(r.name)], installed(r.name)) for r in reqs
             if installed(r.name) is not None and installed(r.name).split('+')[0] != pins[_name(r.name)].split('+')[0]]
    assert stale == [], f"(name, pin, installed) disagree in this environment: {stale}"

def test_make_install_uses_the_constraints():
    text = (ROOT / 'Makefile').read_text()
    assert "pip install -q -c constraints.txt -e '.[dev]'" in text and 'constraints.txt' in text.split('$(STAMP):')[1].split('\n')[0]

def test_quarto_yml_at_top_level_and_where_nbdev_reads_it(tmp_path):
    "DESIGN.md puts `_quarto.yml` at the top; nbdev_docs reads nbs/_quarto.yml (a link to it) and copies its content."
    top, link = ROOT / '_quarto.yml', ROOT / 'nbs' / '_quarto.yml'
    assert top.is_file() and not top.is_symlink(), f"{top} is missing or a link"
    assert link.resolve() == top.resolve(), f"nbs/_quarto.yml resolves to {link.resolve()}; expected {top}"
    from nbdev.serve import _proc_file          # what nbdev_docs/nbdev_preview do with each file of nbs/
    _proc_file(link, cache=tmp_path, path=ROOT / 'nbs')
    assert (tmp_path / '_quarto.yml').read_text() == top.read_text()

CONTRACT = {   # DESIGN.md's public API: renaming or dropping one of these is a breaking change
    'core': 'get_device set_seed get_preset Normalized project eval_guard',
    'data': 'digits natural_images vision_dataset Hierarchy CIFAR10_HIERARCHY CIFAR5X5_HIERARCHY CIFAR100_HIERARCHY '
            'DIGITS_HIERARCHY',
    'models': 'MLP cnn6 cnn8 MnistCNN PreActResNet18 resnet10 resnet18 resnet50',
    'train': 'fit make_optimizer evaluate save_checkpoint load_checkpoint',
    'attacks': 'fgsm fgm bim pgd cw_l2 simba autoattack_components robust_accuracy nonzero_grad_count mean_confidence',
    'defenses': 'pgd_at_loss trades_loss mart_loss targeted_pgd_at_loss',
    'linear': 'LinearFreqTask simulate signgd_table partition_R partition_P risk_ratio_bounds',
    'frequency': 'dct_matrix dct2 idct2 spectrum filter_energy filter_freq freq_bands band_noise lipschitz_upper_bound',
    'hierarchy': 'hierarchical_pgd is_hierarchical_adversarial HAR meta_accuracy p_meta_given_wrong_leaf pgd_meta',
    'alignment': 'alignment_loss align prediction_agreement kl_divergence input_grad_cosine input_grad_norm '
                 'hessian_max_eig loss_surface transfer_error',
    'soar': 'foar_regularizer soar_regularizer soar_loss hvp hvp_fd',
    'transfer': 'mi_fgsm ni_fgsm vmi_fgsm vni_fgsm sini_fgsm ti_fgsm di_fgsm ensemble',
}

@pytest.mark.parametrize('module', sorted(CONTRACT))
def test_public_api_imports(module):
    mod = importlib.import_module(f'robust_nb.{module}')
    missing = [n for n in CONTRACT[module].split() if not hasattr(mod, n)]
    assert not missing, f'robust_nb.{module} lacks {missing} (DESIGN.md public API)'

HOMES = {   # one public home per shared piece (issue 14); the CLI keeps only parsing and printing
    'core': 'check_model check_positive per_example batched_forward predict input_grad model_device',
    'data': 'DATASETS AUGMENTATIONS STANDARD_AUGMENTATION dataset_info resolve_augmentation dataset_transform load_dataset',
    'models': 'MODELS default_model build_model',
    'defenses': 'METHODS THESIS_NAMES make_loss',
    'train': 'dist_env setup_distributed rank_world process_device all_sum barrier shard_indices shard_tensors shard_mean',
    'evaluation': 'checkpoint_config build_from_config load_model ATTACKS evaluate_attacks plot_accuracy alignment_metrics',
    'tables': 'REPRODUCIBLE thesis_table table_function available_tables markdown_table reproduce',
    'experiments.base': 'ExperimentConfig Experiment',
    'exercises': 'SOLUTION_BEGIN SOLUTION_END STUB strip_solutions exercise_cells make_student_copy find_nbs',
}

@pytest.mark.parametrize('module', sorted(HOMES))
def test_library_homes(module):
    mod = importlib.import_module(f'robust_nb.{module}')
    missing = [n for n in HOMES[module].split() if not hasattr(mod, n)]
    assert not missing, f'robust_nb.{module} lacks {missing}'

def test_cli_keeps_old_names_and_is_thin():
    "Names tests and users imported from robust_nb.cli still import, and are the library's objects, not copies."
    import robust_nb.cli as cli, robust_nb.evaluation as E, robust_nb.data as D, robust_nb.exercises as X
    for name, home in [('load_model', E), ('evaluate_attacks', E), ('ATTACKS', E), ('load_dataset', D), ('dataset_info', D),
                       ('exercise_cells', X), ('make_student_copy', X), ('thesis_table', importlib.import_module('robust_nb.tables')),
                       ('make_loss', importlib.import_module('robust_nb.defenses')), ('build_model', importlib.import_module('robust_nb.models'))]:
        assert getattr(cli, name) is getattr(home, name), f"robust_nb.cli.{name} is not {home.__name__}.{name}"
    n = len((ROOT / 'robust_nb' / 'cli.py').read_text().splitlines())
    assert n <= 300, f"cli.py has {n} lines; it should parse arguments and print, nothing more (issue 14: <= 300)"
