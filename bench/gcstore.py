"""The store that the GC measure collects: the same logical content for atoll and the reference.

    content = Content(repos=100, kept=100, deleted=50)   # 10,000 manifests, 100,000 blobs
    content.write_reference(root)     # distribution 2.8's filesystem layout, written directly
    content.reference_files()         # the same as (path, bytes): objects of its s3 driver
    content.write_oci_layout(dir)     # an OCI image layout that `atoll --import` takes whole

Per repository `bench/gc-NNN`:
- `kept` manifests that stay: half tagged (`t0`, `t1`, ...), half untagged (pushed by digest
  and never tagged, or tagged once and the tag moved on). Each names a config and 4 layers of
  its own.
- `deleted` manifests deleted through the API (`DELETE /v2/<name>/manifests/<digest>`) before
  the collection. Each names a config, 9 layers of its own and 1 layer of a kept manifest of
  the same repository (which must survive). Their 9 own blobs, and the manifest itself, are
  garbage.

So with the defaults: 10,000 manifests present (5,000 tagged, 5,000 untagged), 100,000 config
and layer blobs (50,000 in use, 50,000 garbage) plus the 15,000 manifests' own bytes; a
collection that keeps untagged manifests deletes 50,000 + 5,000 = 55,000 blobs (the deleted
manifests' own bytes are blobs in both registries), and no manifest.

Blobs are small (tens to hundreds of bytes of random data): the cost of a collection is per
object (index rows, links, directory entries, unlinks), not per byte. Everything is derived
from a seeded PRNG, so both registries get exactly the same digests.

The reference's layout is what distribution 2.8 writes when the same content is pushed
through its API and the manifests deleted through it (a deletion removes the revision link
and the tags pointing at it, leaving the revision's empty directory; blob data and `_layers`
links stay until a collection). Checked against a tree pushed and deleted through the API of
docker-registry 2.8.2 (repos=1, kept=2, deleted=1): the same paths, the same bytes.
"""

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
KEPT_LAYERS = 4  # per kept manifest, besides its config
DELETED_LAYERS = 9  # per deleted manifest, of its own, besides its config and 1 shared layer


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    repo: str
    tag: str | None  # None: untagged
    deleted: bool  # deleted through the API before the collection
    manifest: bytes
    digest: str  # hex of the manifest
    blobs: list  # (hex, bytes) of config and the layers of its own
    shared: str | None  # hex of a layer of a kept manifest that it also names


class Content:
    def __init__(self, repos=100, kept=100, deleted=50, seed=8):
        if kept % 2 or kept < 2:
            raise ValueError("kept must be even and at least 2")
        self.repos, self.kept, self.deleted = repos, kept, deleted
        rnd = random.Random(seed)
        self.images = []
        for r in range(repos):
            repo = f"bench/gc-{r:03d}"
            kept_layers = []
            for k in range(kept):
                tag = f"t{k // 2}" if k % 2 == 0 else None
                img = self._image(rnd, repo, tag, False, KEPT_LAYERS, None)
                kept_layers.append((img.blobs[1][0], len(img.blobs[1][1])))
                self.images.append(img)
            for d in range(deleted):
                shared = kept_layers[d % kept]
                self.images.append(self._image(rnd, repo, None, True, DELETED_LAYERS, shared))

    @staticmethod
    def _image(rnd, repo, tag, deleted, layers, shared):
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Labels": {"nonce": rnd.randbytes(8).hex()}},
                             "rootfs": {"type": "layers", "diff_ids": []}},
                            separators=(",", ":")).encode()
        blobs = [(_sha(config), config)]
        for _ in range(layers):
            data = rnd.randbytes(rnd.randrange(64, 512))
            blobs.append((_sha(data), data))
        layer_list = [(h, len(b)) for h, b in blobs[1:]] + ([shared] if shared else [])
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + blobs[0][0],
                       "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:" + h, "size": n}
                       for h, n in layer_list],
        }, separators=(",", ":")).encode()
        return Image(repo, tag, deleted, manifest, _sha(manifest), blobs,
                     shared[0] if shared else None)

    # ---- counts -----------------------------------------------------------------------------

    @property
    def manifests_present(self):
        return sum(1 for i in self.images if not i.deleted)

    @property
    def blob_count(self):
        """Config and layer blobs (manifests' own bytes not counted)."""
        return sum(len(i.blobs) for i in self.images)

    @property
    def garbage_blobs(self):
        """Blobs a collection that keeps untagged manifests deletes: the deleted manifests'
        configs, own layers and their own bytes."""
        return sum(len(i.blobs) + 1 for i in self.images if i.deleted)

    def kept_digests(self):
        """Hex digests of the blobs a collection keeps: those of the manifests not deleted,
        their own bytes included."""
        return {h for i in self.images if not i.deleted for h, _ in i.blobs} | \
            {i.digest for i in self.images if not i.deleted}

    def describe(self):
        return (f"{self.manifests_present:,} manifests in {self.repos} repositories "
                f"({sum(1 for i in self.images if i.tag):,} tagged), {self.blob_count:,} "
                f"config/layer blobs; garbage: {self.garbage_blobs:,} blobs (those of "
                f"{sum(1 for i in self.images if i.deleted):,} manifests deleted through the API, "
                f"their own bytes included)")

    # ---- writers ----------------------------------------------------------------------------

    def reference_files(self):
        """(path under the root, bytes) of every file of distribution 2.8's storage: under
        a filesystem driver's `rootdirectory`, or an s3 driver's (an object per file)."""
        v2 = "docker/registry/v2"

        def blob(hexd, data):
            return f"{v2}/blobs/sha256/{hexd[:2]}/{hexd}/data", data

        def link(repo, *parts, hexd):
            return "/".join([v2, "repositories", repo, *parts, "link"]), f"sha256:{hexd}".encode()

        for img in self.images:
            for hexd, data in img.blobs:
                yield blob(hexd, data)
                yield link(img.repo, "_layers", "sha256", hexd, hexd=hexd)
            yield blob(img.digest, img.manifest)
            if img.deleted:
                continue
            yield link(img.repo, "_manifests", "revisions", "sha256", img.digest, hexd=img.digest)
            if img.tag:
                yield link(img.repo, "_manifests", "tags", img.tag, "current", hexd=img.digest)
                yield link(img.repo, "_manifests", "tags", img.tag, "index", "sha256", img.digest,
                           hexd=img.digest)

    def reference_empty_dirs(self):
        """The directories a filesystem driver leaves empty (an object store has no
        directories): a deleted manifest's revision, each repository's _uploads."""
        v2 = "docker/registry/v2"
        for img in self.images:
            if img.deleted:  # the API's DELETE removes the link file, not its directory
                yield f"{v2}/repositories/{img.repo}/_manifests/revisions/sha256/{img.digest}"
        for img in self.images:  # a push leaves an empty _uploads directory in each repository
            yield f"{v2}/repositories/{img.repo}/_uploads"

    def write_reference(self, root):
        """distribution 2.8's filesystem storage under `root` (its `rootdirectory`)."""
        for rel, data in self.reference_files():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        for rel in self.reference_empty_dirs():
            os.makedirs(os.path.join(root, rel), exist_ok=True)

    def write_oci_layout(self, layout):
        """An OCI image layout with every manifest (deleted ones too: they are deleted through
        the API after the import), named `repo:tag` or, untagged, `repo@sha256:...`. One
        layout: for up to about 30,000 manifests (atoll reads at most 8 MiB of index.json);
        write_oci_layouts splits a larger store."""
        for _ in oci_layouts(layout, self._entries(), per=None, keep=True):
            pass

    def write_oci_layouts(self, base, per=20_000):
        """The same as layouts of at most `per` manifests each, one at a time (see
        oci_layouts)."""
        return oci_layouts(base, self._entries(), per)

    def _entries(self):
        for img in self.images:
            name = f"{img.repo}:{img.tag}" if img.tag else f"{img.repo}@sha256:{img.digest}"
            yield [d for _, d in img.blobs], img.manifest, img.digest, [name]

    def deletions(self):
        """(repo, "sha256:...") of each manifest to delete through the API."""
        return [(i.repo, "sha256:" + i.digest) for i in self.images if i.deleted]


def oci_layouts(base, images, per, keep=False):
    """Writes OCI image layouts of `images` ((blob bytes, manifest bytes, manifest hex, names)
    each), at most `per` index entries in each (None: one layout, `base` itself), and yields
    each one's directory when it is complete; when the caller asks for the next, the previous
    is deleted (unless `keep`). `atoll --import` of every one holds the images. Split because
    atoll reads at most 8 MiB of an index.json (20,000 entries are about 5 MB)."""
    entries, n, layout = [], 0, None
    for blobs, manifest, digest, names in images:
        if layout is None:
            layout = base if per is None else os.path.join(base, f"oci-{n:03d}")
            os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
        for data in blobs + [manifest]:
            path = os.path.join(layout, "blobs", "sha256", _sha(data))
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
        entries.extend({"mediaType": OCI_MANIFEST, "digest": "sha256:" + digest,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": name}}
                       for name in names)
        if per is not None and len(entries) >= per:
            _finish_layout(layout, entries)
            yield layout
            if not keep:
                shutil.rmtree(layout)
            entries, n, layout = [], n + 1, None
    if layout is not None:
        _finish_layout(layout, entries)
        yield layout
        if not keep and per is not None:
            shutil.rmtree(layout)


def _finish_layout(layout, entries):
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": entries}, f)
