"""The stores the scale curves read: the same logical content for atoll and the reference, at
a size factor `p` (1, 10, 100), generated from a seeded PRNG and written once (not timed).

    store = Store(p=10)                  # 10,000 repositories, 100,000 blobs, ...
    store.write_reference(root)          # distribution 2.8's filesystem layout, written directly
    for layout in store.write_oci_layouts(dir):   # OCI image layouts, one at a time,
        atoll --import layout                     #   that `atoll --import` takes whole

At factor p:
- `1,000 p` repositories `c/rNNNNNN`, each with two images (`t0`, `t1`) of a config and four
  layers of their own: `10,000 p` config and layer blobs, `2,000 p` manifests;
- `c/tags`: `1,000 p` tags (`v0000000`, ...) over ten images;
- `c/refs`: one subject image with `100 p` referrers (artifact manifests naming it as their
  subject, each with one blob of its own).

So p = 100 is a million blobs in 100,000 repositories, one repository with 100,000 tags and a
subject with 10,000 referrers. Blobs are tens to hundreds of bytes: what a request costs here is
per index row and per file, not per byte (blob_get and the large-blob measure see bytes).

The reference's tree is what distribution 2.8 writes for the same pushes (the layout gcstore.py
checked against a real push); a referrer is an ordinary manifest to it (2.8 has no referrers
API), stored as a revision with its layer linked.
"""

import hashlib
import json
import os
import random

from gcstore import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, oci_layouts

ARTIFACT = "application/vnd.example.sbom.v1"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
TAGS_IMAGES = 10  # images the tags of c/tags point at


def _sha(data):
    return hashlib.sha256(data).hexdigest()


class Image:
    """A manifest with its blobs, in one repository, under zero or more tags."""

    __slots__ = ("repo", "tags", "manifest", "digest", "blobs")

    def __init__(self, repo, tags, manifest, blobs):
        self.repo, self.tags, self.manifest, self.blobs = repo, tags, manifest, blobs
        self.digest = _sha(manifest)


def _manifest(config, layers, config_type=OCI_CONFIG, subject=None, artifact=None):
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact:
        m["artifactType"] = artifact
    m["config"] = {"mediaType": config_type, "digest": "sha256:" + _sha(config),
                   "size": len(config)}
    m["layers"] = [{"mediaType": OCI_LAYER, "digest": "sha256:" + _sha(d), "size": len(d)}
                   for d in layers]
    if subject:
        m["subject"] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + subject.digest,
                        "size": len(subject.manifest)}
    return json.dumps(m, separators=(",", ":")).encode()


class Store:
    def __init__(self, p, seed=21):
        self.p = p
        self.repos = int(1000 * p)
        self.tag_count = int(1000 * p)
        self.referrer_count = int(100 * p)
        self.seed = seed

    def name_of(self, i):
        return f"c/r{i:06d}"

    @property
    def middle_repo(self):
        return self.name_of(self.repos // 2)

    def middle_tag(self):
        return f"v{self.tag_count // 2:07d}"

    def describe(self):
        return (f"{self.repos:,} repositories of 2 images, {10 * self.repos:,} blobs; c/tags "
                f"with {self.tag_count:,} tags; c/refs with {self.referrer_count:,} referrers")

    def images(self):
        """Every image, generated afresh (the same each time: seeded)."""
        rnd = random.Random(self.seed)

        def image(repo, tags, layers=4):
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "config": {"Labels": {"nonce": rnd.randbytes(8).hex()}},
                                 "rootfs": {"type": "layers", "diff_ids": []}},
                                separators=(",", ":")).encode()
            data = [rnd.randbytes(rnd.randrange(64, 512)) for _ in range(layers)]
            return Image(repo, tags, _manifest(config, data), [config] + data)

        for r in range(self.repos):
            for t in range(2):
                yield image(self.name_of(r), [f"t{t}"])
        per = -(-self.tag_count // TAGS_IMAGES)
        for k in range(TAGS_IMAGES):
            tags = [f"v{i:07d}" for i in range(k * per, min((k + 1) * per, self.tag_count))]
            yield image("c/tags", tags)
        subject = image("c/refs", ["subject"])
        yield subject
        empty = b"{}"
        for _ in range(self.referrer_count):
            sbom = rnd.randbytes(rnd.randrange(64, 512))
            yield Image("c/refs", [], _manifest(empty, [sbom], EMPTY_CONFIG, subject, ARTIFACT),
                        [empty, sbom])

    def subject_digest(self):
        for img in self.images():
            if img.repo == "c/refs":
                return "sha256:" + img.digest
        raise AssertionError("no subject")

    def probe(self):
        """What the latency measures ask for: a repository in the middle of the catalog, its
        `t0` manifest's digest and one of its layers."""
        want = self.middle_repo
        rnd_images = self.images()
        for img in rnd_images:
            if img.repo == want:
                return {"repo": want, "manifest": "sha256:" + img.digest,
                        "layer": "sha256:" + _sha(img.blobs[1])}
        raise AssertionError("no middle repository")

    # ---- writers ------------------------------------------------------------------------------

    def write_reference(self, root):
        """distribution 2.8's filesystem storage under `root` (its `rootdirectory`)."""
        v2 = os.path.join(root, "docker", "registry", "v2")
        made = set()

        def put(path, data):
            d = os.path.dirname(path)
            if d not in made:
                os.makedirs(d, exist_ok=True)
                made.add(d)
            with open(path, "wb") as f:
                f.write(data)

        def blob(hexd, data):
            put(os.path.join(v2, "blobs", "sha256", hexd[:2], hexd, "data"), data)

        seen_blobs = set()
        for img in self.images():
            repo = os.path.join(v2, "repositories", img.repo)
            for data in img.blobs:
                h = _sha(data)
                if h not in seen_blobs:
                    blob(h, data)
                    seen_blobs.add(h)
                put(os.path.join(repo, "_layers", "sha256", h, "link"), f"sha256:{h}".encode())
            blob(img.digest, img.manifest)
            link = f"sha256:{img.digest}".encode()
            put(os.path.join(repo, "_manifests", "revisions", "sha256", img.digest, "link"), link)
            for tag in img.tags:
                tags = os.path.join(repo, "_manifests", "tags", tag)
                put(os.path.join(tags, "current", "link"), link)
                put(os.path.join(tags, "index", "sha256", img.digest, "link"), link)
            if repo not in made:
                os.makedirs(os.path.join(repo, "_uploads"), exist_ok=True)
                made.add(repo)

    def write_oci_layouts(self, base, per=20_000):
        """OCI image layouts under `base`, one at a time, at most `per` entries each: one per
        tag (`repo:tag`), untagged images as `repo@sha256:...` (gcstore.oci_layouts says how
        they come and go). `atoll --import` of every one holds what write_reference wrote."""
        return oci_layouts(base, ((img.blobs, img.manifest, img.digest,
                                   [f"{img.repo}:{t}" for t in img.tags]
                                   or [f"{img.repo}@sha256:{img.digest}"])
                                  for img in self.images()), per)
