"""robust_nb.data: tiny files in each real on-disk format, loaded through `vision_dataset` (torchvision's own classes),
the class hierarchies of Table 5.1 against CIFAR-100's own coarse labels, and the offline datasets."""
import gzip, pickle, struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from hypothesis import given, settings, strategies as st

from robust_nb.data import (fashion_mnist, read_idx, idx_folder, FASHION_MNIST_DEBIAN_DIR, FASHION_MNIST_CLASSES, digits, natural_images, vision_dataset, loaders, Hierarchy, NATURAL_IMAGES, VISION_DATASETS,
                            CIFAR10_HIERARCHY, CIFAR5X5_HIERARCHY, CIFAR100_HIERARCHY, DIGITS_HIERARCHY, CIFAR100_CLASSES)

# --------------------------------------------------------------------------------------------------------------------
# CIFAR-100's superclass table as published on https://www.cs.toronto.edu/~kriz/cifar.html, written here with the
# dataset's own identifiers (coarse_label_names / fine_label_names), independently of robust_nb.data's Table 5.1 text.
CIFAR100_SUPERCLASSES = {
    'aquatic_mammals': 'beaver dolphin otter seal whale',
    'fish': 'aquarium_fish flatfish ray shark trout',
    'flowers': 'orchid poppy rose sunflower tulip',
    'food_containers': 'bottle bowl can cup plate',
    'fruit_and_vegetables': 'apple mushroom orange pear sweet_pepper',
    'household_electrical_devices': 'clock keyboard lamp telephone television',
    'household_furniture': 'bed chair couch table wardrobe',
    'insects': 'bee beetle butterfly caterpillar cockroach',
    'large_carnivores': 'bear leopard lion tiger wolf',
    'large_man-made_outdoor_things': 'bridge castle house road skyscraper',
    'large_natural_outdoor_scenes': 'cloud forest mountain plain sea',
    'large_omnivores_and_herbivores': 'camel cattle chimpanzee elephant kangaroo',
    'medium_mammals': 'fox porcupine possum raccoon skunk',
    'non-insect_invertebrates': 'crab lobster snail spider worm',
    'people': 'baby boy girl man woman',
    'reptiles': 'crocodile dinosaur lizard snake turtle',
    'small_mammals': 'hamster mouse rabbit shrew squirrel',
    'trees': 'maple_tree oak_tree palm_tree pine_tree willow_tree',
    'vehicles_1': 'bicycle bus motorcycle pickup_truck train',
    'vehicles_2': 'lawn_mower rocket streetcar tank tractor',
}
COARSE_NAMES = sorted(CIFAR100_SUPERCLASSES)
FINE_NAMES = sorted(f for v in CIFAR100_SUPERCLASSES.values() for f in v.split())
FINE_TO_COARSE = {f: COARSE_NAMES.index(c) for c, v in CIFAR100_SUPERCLASSES.items() for f in v.split()}
CIFAR10_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


# ---------------------------------------------------------------------------------------------- writers, real formats
def write_idx(path, arr):
    "An idx-ubyte file (big-endian magic 0x0000 08 <ndim>, big-endian uint32 dims, then uint8 data), as MNIST ships it."
    arr = np.asarray(arr, dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as f:
        f.write(struct.pack('>I', 0x0800 | arr.ndim)); f.write(struct.pack(f'>{arr.ndim}I', *arr.shape)); f.write(arr.tobytes())


def write_mnist(root, folder, n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed); out = {}
    for split, n in (('train', n_train), ('t10k', n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(Path(root) / folder / 'raw' / f'{split}-images-idx3-ubyte', x)
        write_idx(Path(root) / folder / 'raw' / f'{split}-labels-idx1-ubyte', y)
        out[split] = (x, y)
    return out


def _dump(path, obj):
    with open(path, 'wb') as f: pickle.dump(obj, f, protocol=2)


def write_cifar10(root, n=3, seed=0):
    rng = np.random.default_rng(seed); d = Path(root) / 'cifar-10-batches-py'; d.mkdir(parents=True); out = {}
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        out[name] = dict(batch_label=name, data=rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         labels=rng.integers(0, 10, n).tolist(), filenames=[f'{name}_{i}.png' for i in range(n)])
        _dump(d / name, out[name])
    _dump(d / 'batches.meta', dict(label_names=CIFAR10_NAMES, num_cases_per_batch=n, num_vis=3072))
    return out


def write_cifar100(root, seed=0):
    "train: every fine class twice, test: every fine class once (shuffled); coarse labels from the published table."
    rng = np.random.default_rng(seed); d = Path(root) / 'cifar-100-python'; d.mkdir(parents=True); out = {}
    for name, reps in (('train', 2), ('test', 1)):
        fine = rng.permutation(np.repeat(np.arange(100), reps))
        out[name] = dict(batch_label=name, data=rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
                         fine_labels=fine.tolist(), coarse_labels=[FINE_TO_COARSE[FINE_NAMES[i]] for i in fine],
                         filenames=[f'{name}_{i}.png' for i in range(len(fine))])
        _dump(d / name, out[name])
    _dump(d / 'meta', dict(fine_label_names=FINE_NAMES, coarse_label_names=COARSE_NAMES))
    return out


def write_svhn(root, split, n=5, seed=0):
    "`{split}_32x32.mat`: X uint8 (32, 32, 3, N), y uint8 (N, 1) with labels 1..10 (10 is the digit 0)."
    import scipy.io
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = np.array([[10], [1], [5], [9], [10]][:n], dtype=np.uint8)
    Path(root).mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(Path(root) / f'{split}_32x32.mat', {'X': X, 'y': y})
    return X, y


def write_image_folder(root, split, classes=('n01440764', 'n02102040', 'n03000684'), per_class=2, size=(20, 24), seed=0):
    rng = np.random.default_rng(seed); out = []
    for c in classes:
        (Path(root) / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(a).save(Path(root) / split / c / f'{c}_{i}.png'); out.append((c, a))
    return out


# ------------------------------------------------------------------------------------------------------ vision_dataset
@pytest.mark.parametrize('name,folder', [('mnist', 'MNIST'), ('fashion_mnist', 'FashionMNIST')])
def test_mnist_formats(tmp_path, name, folder):
    data = write_mnist(tmp_path, folder)
    for train, split in ((True, 'train'), (False, 't10k')):
        ds = vision_dataset(name, tmp_path, train=train)
        x_raw, y_raw = data[split]
        assert len(ds) == len(y_raw)
        x, y = ds[1]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        assert y == int(y_raw[1])
        assert torch.allclose(x[0], torch.from_numpy(x_raw[1]).float() / 255)
        assert 0 <= x.min() and x.max() <= 1


def test_cifar10_format(tmp_path):
    b = write_cifar10(tmp_path)
    tr, te = vision_dataset('cifar10', tmp_path, verify=False), vision_dataset('cifar10', tmp_path, train=False, verify=False)
    assert (len(tr), len(te)) == (15, 3)
    assert tr.classes == CIFAR10_NAMES == list(CIFAR10_HIERARCHY.classes)
    assert tr.targets == sum((b[f'data_batch_{i}']['labels'] for i in range(1, 6)), [])
    x, y = te[2]
    assert x.shape == (3, 32, 32) and y == b['test_batch']['labels'][2]
    # data rows are channel-major: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert torch.allclose(x, torch.from_numpy(b['test_batch']['data'][2].reshape(3, 32, 32)).float() / 255)


def test_cifar100_fine_and_coarse(tmp_path):
    b = write_cifar100(tmp_path)
    fine = vision_dataset('cifar100', tmp_path, train=False, verify=False)
    coarse = vision_dataset('cifar100_coarse', tmp_path, train=False, verify=False)
    assert len(fine) == len(coarse) == 100
    assert fine.classes == FINE_NAMES and coarse.classes == COARSE_NAMES
    assert fine.targets == b['test']['fine_labels'] and coarse.targets == b['test']['coarse_labels']
    assert torch.equal(fine[7][0], coarse[7][0]) and fine[7][0].shape == (3, 32, 32)
    assert len(vision_dataset('cifar100_coarse', tmp_path, verify=False)) == 200


def test_cifar100_hierarchy_agrees_with_the_datasets_coarse_labels(tmp_path):
    write_cifar100(tmp_path)
    fine = vision_dataset('cifar100', tmp_path, verify=False)
    coarse = vision_dataset('cifar100_coarse', tmp_path, verify=False)
    assert list(CIFAR100_HIERARCHY.classes) == fine.classes           # class index = the dataset's fine label
    assert CIFAR100_HIERARCHY.n_meta == len(coarse.classes) == 20
    z = CIFAR100_HIERARCHY.to_meta(torch.tensor(fine.targets))
    assert torch.equal(z, torch.tensor(coarse.targets))               # meta index = the dataset's coarse label
    # and the meta-class names are Table 5.1's wording of CIFAR-100's superclass names
    for m, c in zip(CIFAR100_HIERARCHY.meta_names, coarse.classes):
        assert m.lower().replace(' ', '_').replace('-sized', '') == c


def test_cifar5x5(tmp_path):
    b = write_cifar100(tmp_path)
    ds = vision_dataset('cifar5x5', tmp_path, train=False, verify=False)
    assert len(ds) == 25 and sorted(ds.targets) == list(range(25))
    assert ds.classes == list(CIFAR5X5_HIERARCHY.classes)
    assert set(ds.classes) == {f for c in ('fish', 'vehicles_1', 'people', 'trees', 'insects')
                               for f in CIFAR100_SUPERCLASSES[c].split()}
    # each kept image carries its fine class, renamed into the 25-class label space
    fine = b['test']['fine_labels']; kept = [i for i, f in enumerate(fine) if FINE_NAMES[f] in ds.classes]
    assert [ds.classes[t] for t in ds.targets] == [FINE_NAMES[fine[i]] for i in kept]
    assert torch.allclose(ds[0][0], torch.from_numpy(b['test']['data'][kept[0]].reshape(3, 32, 32)).float() / 255)
    # the 5x5 meta-classes are whole CIFAR-100 superclasses
    coarse = [b['test']['coarse_labels'][i] for i in kept]
    z = CIFAR5X5_HIERARCHY.to_meta(torch.tensor(ds.targets))
    assert len({(int(a), c) for a, c in zip(z, coarse)}) == 5


def test_svhn_format(tmp_path):
    X, y = write_svhn(tmp_path, 'train'); write_svhn(tmp_path, 'test', n=3, seed=1)
    ds = vision_dataset('svhn', tmp_path, verify=False)
    assert len(ds) == 5 and len(vision_dataset('svhn', tmp_path, train=False, verify=False)) == 3
    assert [ds[i][1] for i in range(5)] == [0, 1, 5, 9, 0]           # SVHN's label 10 is the digit 0
    x, _ = ds[3]
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.from_numpy(X[:, :, :, 3]).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize('name,sub', [('imagenette', ''), ('imagenet', ''), ('imagenette', 'imagenette2')])
def test_image_folder(tmp_path, name, sub):
    root = tmp_path / sub if sub else tmp_path
    imgs = write_image_folder(root, 'train'); write_image_folder(root, 'val', per_class=1)
    ds = vision_dataset(name, tmp_path)
    assert len(ds) == 6 and ds.classes == ['n01440764', 'n02102040', 'n03000684']
    assert [t for _, t in ds.samples] == [0, 0, 1, 1, 2, 2]
    x, y = ds[2]
    assert x.shape == (3, 20, 24) and y == 1
    assert torch.allclose(x, torch.from_numpy(imgs[2][1]).permute(2, 0, 1).float() / 255)
    assert len(vision_dataset(name, tmp_path, train=False)) == 3


def test_transform_is_used(tmp_path):
    write_mnist(tmp_path, 'MNIST')
    ds = vision_dataset('mnist', tmp_path, transform=lambda im: np.asarray(im).shape)
    assert ds[0][0] == (28, 28)


@pytest.mark.parametrize('name', VISION_DATASETS)
def test_missing_files_name_dataset_root_and_remedy(tmp_path, name):
    with pytest.raises(FileNotFoundError) as e: vision_dataset(name, tmp_path / 'nowhere')
    msg = str(e.value)
    assert repr(name) in msg and str(tmp_path / 'nowhere') in msg
    assert 'download=True' in msg or 'image-net.org' in msg


def test_partly_missing_files_are_listed(tmp_path):
    write_cifar10(tmp_path); (tmp_path / 'cifar-10-batches-py' / 'data_batch_3').unlink()
    with pytest.raises(FileNotFoundError, match='missing 1 of 7 files.*data_batch_3'): vision_dataset('cifar10', tmp_path)
    write_mnist(tmp_path, 'MNIST'); (tmp_path / 'MNIST' / 'raw' / 't10k-labels-idx1-ubyte').unlink()
    with pytest.raises(FileNotFoundError, match='t10k-labels-idx1-ubyte'): vision_dataset('mnist', tmp_path, train=False)
    assert len(vision_dataset('mnist', tmp_path, train=True)) > 0        # the training split's files are all there


@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'cifar100_coarse', 'svhn'])
def test_checksums_are_verified_by_default(tmp_path, name):
    {'cifar10': write_cifar10, 'svhn': lambda r: write_svhn(r, 'train')}.get(name, write_cifar100)(tmp_path)
    with pytest.raises(ValueError, match='MD5 checksums differ.*verify=False'): vision_dataset(name, tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="name got 'cifar1000'"): vision_dataset('cifar1000', tmp_path)
    with pytest.raises(ValueError, match='root got None'): vision_dataset('cifar10', None)
    with pytest.raises(ValueError, match='ImageNet cannot be downloaded'): vision_dataset('imagenet', tmp_path, download=True)


# ------------------------------------------------------------------------------------------------------- hierarchies
def test_table_5_1_sizes():
    for h, shape in ((CIFAR10_HIERARCHY, (2, 10)), (CIFAR5X5_HIERARCHY, (5, 25)), (CIFAR100_HIERARCHY, (20, 100)),
                     (DIGITS_HIERARCHY, (3, 10))):
        assert (h.n_meta, h.n_classes) == shape
    assert CIFAR10_HIERARCHY.groups['Vehicles'] == ('airplane', 'automobile', 'ship', 'truck')
    assert list(CIFAR100_CLASSES) == FINE_NAMES


def test_cifar100_hierarchy_is_the_published_superclass_table():
    published = {frozenset(v.split()) for v in CIFAR100_SUPERCLASSES.values()}
    assert {frozenset(v) for v in CIFAR100_HIERARCHY.groups.values()} == published
    assert {frozenset(v) for v in CIFAR5X5_HIERARCHY.groups.values()} < published


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_hierarchy_properties(assign, rnd):
    "Any partition: meta_of, leaf_index and leaf_pos agree with the groups and invert each other."
    classes = [f'c{i}' for i in range(len(assign))]
    groups = {}
    for c, m in zip(classes, assign): groups.setdefault(f'm{m}', []).append(c)
    for v in groups.values(): rnd.shuffle(v)
    h = Hierarchy(groups, classes)
    assert h.n_meta == len(groups) and h.n_classes == len(classes)
    for m, (name, leaves) in enumerate(groups.items()):
        assert [classes[i] for i in h.leaf_index[m]] == leaves
        assert (h.meta_of[h.leaf_index[m]] == m).all()
        assert torch.equal(h.leaf_pos[h.leaf_index[m]], torch.arange(len(leaves)))
    y = torch.arange(len(classes))
    assert torch.equal(h.to_meta(y), h.meta_of)


def test_hierarchy_rejects_bad_partitions():
    cls = ['a', 'b', 'c']
    with pytest.raises(ValueError, match="class 'b' is in meta-classes 'x' and 'y'"): Hierarchy({'x': ['a', 'b'], 'y': ['b', 'c']}, cls)
    with pytest.raises(ValueError, match="class 'c' is in no meta-class"): Hierarchy({'x': ['a', 'b']}, cls)
    with pytest.raises(ValueError, match="unknown class 'd'"): Hierarchy({'x': ['a', 'b', 'c', 'd']}, cls)
    with pytest.raises(ValueError, match='groups got'): Hierarchy({}, cls)
    with pytest.raises(ValueError, match="groups\\['x'\\]"): Hierarchy({'x': 'abc'}, cls)


# ------------------------------------------------------------------------------------------------- offline datasets
def test_digits_split_and_range():
    tr, te = digits('train'), digits('test')
    assert len(tr) == 1437 and len(te) == 360
    assert tr.x.min() == 0 and tr.x.max() == 1 and tr.y.dtype == torch.int64
    assert torch.equal(digits('train').x, tr.x)
    counts = torch.bincount(te.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37              # stratified: ~20% of each ~180-image class
    big = digits('train', size=16, seed=2)
    assert big.x.shape == (1437, 1, 16, 16) and 0 <= big.x.min() and big.x.max() <= 1
    with pytest.raises(ValueError, match="split got 'val'"): digits('val')


def test_loaders_are_seeded():
    tr = digits('train')
    a = next(iter(loaders(tr, batch_size=32, seed=5)))[1]
    torch.manual_seed(123)                                          # the global RNG does not matter
    assert torch.equal(a, next(iter(loaders(tr, batch_size=32, seed=5)))[1])


def test_natural_images():
    x = natural_images(size=32)
    assert x.shape == (len(NATURAL_IMAGES), 1, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert x.flatten(1).std(1).min() > 0.02                         # real photos, not blank arrays
    c = natural_images(['coffee'], size=48, gray=False)
    assert c.shape == (1, 3, 48, 48) and not torch.equal(c[0, 0], c[0, 2])
    with pytest.raises(ValueError, match="names got 'lena'"): natural_images('lena')


def write_caltech101(root, sizes=(('Faces', 6), ('ant', 3), ('yin_yang', 1)), seed=0):
    "Caltech-101's layout: caltech101/101_ObjectCategories/<class>/image_NNNN.jpg, plus BACKGROUND_Google/ (not a class)."
    rng = np.random.default_rng(seed); cats = Path(root) / 'caltech101' / '101_ObjectCategories'
    (cats / 'BACKGROUND_Google').mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(cats / 'BACKGROUND_Google' / 'image_0001.jpg')
    for c, n in sizes:
        (cats / c).mkdir()
        for i in range(1, n + 1):
            shape = (16, 12) if i == 2 else (10 + i, 14, 3)                  # the second photo of a class is greyscale
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(cats / c / f'image_{i:04d}.jpg')


def test_caltech101_split_and_images(tmp_path):
    from torchvision import transforms
    write_caltech101(tmp_path)
    tr, te = vision_dataset('caltech101', tmp_path), vision_dataset('caltech101', tmp_path, train=False)
    assert tr.classes == te.classes == ['Faces', 'ant', 'yin_yang']          # sorted folders, background dropped
    assert sorted(tr.indices + te.indices) == list(range(10)) and not set(tr.indices) & set(te.indices)
    assert [te.targets.count(c) for c in range(3)] == [1, 1, 0]              # round(0.2 n), >= 1, none of a 1-image class
    assert [y for _, y in tr] == tr.targets
    gray = vision_dataset('caltech101', tmp_path, transform=transforms.PILToTensor()).dataset[1][0]   # Faces/image_0002, greyscale
    assert gray.shape == (3, 16, 12) and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    x, _ = tr[0]
    assert x.dtype == torch.float32 and x.shape[0] == 3 and 0 <= x.min() and x.max() <= 1
    # the split is a property of the data, not of the call order or of the global RNG
    torch.manual_seed(123)
    assert vision_dataset('caltech101', tmp_path, train=False).indices == te.indices


# ------------------------------------------------------------------------------------------------------ Fashion-MNIST
def write_idx_gz(path, a, code=0x08):
    "A gzipped IDX file written from the format's definition (magic 0 0 type ndim, big-endian sizes, big-endian data)."
    dt = {0x08: '>u1', 0x0C: '>i4'}[code]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, 'wb') as f: f.write(bytes([0, 0, code, a.ndim]) + struct.pack(f'>{a.ndim}I', *a.shape) + a.astype(dt).tobytes())

def write_fashion_gz(folder, n_train=5, n_test=3, seed=0):
    rng, out = np.random.default_rng(seed), {}
    for stem, n in (('train', n_train), ('t10k', n_test)):
        out[stem] = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)
        write_idx_gz(Path(folder) / f'{stem}-images-idx3-ubyte.gz', out[stem][0])
        write_idx_gz(Path(folder) / f'{stem}-labels-idx1-ubyte.gz', out[stem][1])
    return out

@pytest.mark.parametrize('layout', ['', 'FashionMNIST/raw', 'fashion-mnist'])
def test_fashion_mnist_gz_fixture_in_each_layout(tmp_path, layout):
    ref = write_fashion_gz(tmp_path / layout)
    ds = fashion_mnist('train', root=tmp_path)
    assert ds.x.shape == (5, 1, 28, 28) and ds.x.dtype == torch.float32 and ds.classes == list(FASHION_MNIST_CLASSES)
    assert ds.y.tolist() == ref['train'][1].tolist()
    assert torch.equal((ds.x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(ref['train'][0]))
    vd = vision_dataset('fashion_mnist', tmp_path, train=False)
    assert len(vd) == 3 and vd[2][1] == int(ref['t10k'][1][2]) and torch.equal(vd[2][0], fashion_mnist('test', tmp_path).x[2])

def test_fashion_mnist_root_none_uses_robust_nb_data_then_debian(tmp_path, monkeypatch):
    ref = write_fashion_gz(tmp_path / 'FashionMNIST' / 'raw', n_test=2)
    monkeypatch.setenv('ROBUST_NB_DATA', str(tmp_path))
    assert idx_folder('fashion_mnist', train=False) == tmp_path / 'FashionMNIST' / 'raw'
    assert fashion_mnist('test').y.tolist() == ref['t10k'][1].tolist()
    monkeypatch.setenv('ROBUST_NB_DATA', str(tmp_path / 'empty'))
    if (FASHION_MNIST_DEBIAN_DIR / 't10k-labels-idx1-ubyte.gz').is_file():
        assert idx_folder('fashion_mnist', train=False) == FASHION_MNIST_DEBIAN_DIR
    with pytest.raises(FileNotFoundError) as e: fashion_mnist('test', root=tmp_path / 'empty')   # an explicit root is searched alone
    assert 'dataset-fashion-mnist' in str(e.value) and str(tmp_path / 'empty' / 'FashionMNIST' / 'raw') in str(e.value)

def test_fashion_mnist_truncated_or_corrupt_files_name_the_file(tmp_path):
    write_fashion_gz(tmp_path)
    f = tmp_path / 'train-images-idx3-ubyte.gz'
    f.write_bytes(f.read_bytes()[:200])                                     # a download cut short
    with pytest.raises(ValueError, match=f'{f}.*truncated or corrupt'): fashion_mnist('train', root=tmp_path)
    g = tmp_path / 't10k-labels-idx1-ubyte.gz'
    with gzip.open(g, 'wb') as h: h.write(bytes([0, 0, 8, 1]) + struct.pack('>I', 7) + bytes(3))   # header: 7 labels, data: 3
    with pytest.raises(ValueError, match=f'{g}.*holds 3 data bytes.*needs 7'): read_idx(g)
    g.write_bytes(b'\x1f\x8b garbage')
    with pytest.raises(ValueError, match=str(g)): fashion_mnist('test', root=tmp_path)

def test_read_idx_plain_and_int32(tmp_path):
    a = np.array([[-3, 2**20], [7, 0]])
    write_idx_gz(tmp_path / 'a.gz', a, code=0x0C)
    (tmp_path / 'a').write_bytes(gzip.decompress((tmp_path / 'a.gz').read_bytes()))
    for p in ('a.gz', 'a'): assert read_idx(tmp_path / p).tolist() == a.tolist()

def test_real_fashion_mnist_from_debian():
    "The real files (`make test` installs Debian's dataset-fashion-mnist when it can)."
    if not (FASHION_MNIST_DEBIAN_DIR / 'train-images-idx3-ubyte.gz').is_file():
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({FASHION_MNIST_DEBIAN_DIR})")
    tr, te = fashion_mnist('train'), fashion_mnist('test')
    assert (len(tr), len(te)) == (60_000, 10_000)
    assert torch.bincount(te.y).tolist() == [1000] * 10 and torch.bincount(tr.y).tolist() == [6000] * 10
    assert float(tr.x.min()) == 0.0 and float(tr.x.max()) == 1.0
    assert te.y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]   # the first test labels of the official t10k file

@pytest.mark.parametrize('name', ['mnist', 'cifar10', 'svhn', 'caltech101', 'imagenette'])
def test_download_hint_only_where_the_caller_offers_download(tmp_path, name):
    "The CLI has no --download: its missing-file errors (download_hint=False) say where the files go, not download=True."
    with pytest.raises(FileNotFoundError) as e: vision_dataset(name, tmp_path, download_hint=False)
    assert 'download=True' not in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(FileNotFoundError, match='download=True'): vision_dataset(name, tmp_path)

def test_load_dataset_fashion_mnist_needs_no_root(tmp_path, monkeypatch):
    "`robust-nb ... --data fashion_mnist` without --data-root: ROBUST_NB_DATA, else Debian's files."
    from robust_nb.data import load_dataset
    ref = write_fashion_gz(tmp_path / 'FashionMNIST' / 'raw', n_test=3)
    monkeypatch.setenv('ROBUST_NB_DATA', str(tmp_path))
    ds = load_dataset('fashion_mnist', train=False)
    assert len(ds) == 3 and ds[2][1] == int(ref['t10k'][1][2])
    monkeypatch.delenv('ROBUST_NB_DATA')
    if (FASHION_MNIST_DEBIAN_DIR / 't10k-images-idx3-ubyte.gz').is_file():
        assert len(load_dataset('fashion_mnist', train=False)) == 10_000
