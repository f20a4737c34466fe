import numpy as np
import pytest
import torch

from data_gen.config import PoolingConfig
from data_gen.pooling import gaussian_coverage_pool


def numpy_reference(emb: np.ndarray, mask: np.ndarray, k: int, sigma: float, alpha: float) -> np.ndarray:
    """The method.md formula written out directly, one row and one token at a time."""
    out = []
    for e, m in zip(emb, mask):
        toks = [i for i in range(len(m)) if m[i]]
        T = len(toks)
        g = sum(e[i] for i in toks) / T
        vecs = [g]
        for kk in range(1, k + 1):
            c = T * kk / (k + 1)
            w = np.array([np.exp(-0.5 * ((t - c) / (sigma * T)) ** 2) for t in range(T)])
            w = w / w.sum()
            local = sum(w[t] * e[toks[t]] for t in range(T))
            vecs.append(alpha * local + (1 - alpha) * g)
        out.append(np.stack(vecs))
    return np.stack(out)


@pytest.mark.parametrize("k,sigma,alpha", [(5, 0.05, 1.0), (3, 0.2, 0.5), (10, 0.05, 1.0), (1, 0.3, 0.0)])
def test_matches_direct_numpy_formula_with_padding_on_either_side(k, sigma, alpha):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 40, 8)).astype(np.float32)
    mask = np.zeros((3, 40), np.int64)
    mask[0, :40] = 1
    mask[1, :17] = 1          # right padding
    mask[2, 25:] = 1          # left padding: t counts unpadded positions
    got = gaussian_coverage_pool(torch.tensor(emb), torch.tensor(mask), k, sigma, alpha).numpy()
    want = numpy_reference(emb, mask, k, sigma, alpha)
    assert got.shape == (3, k + 1, 8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_k1_alpha0_is_mean_pooling_of_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    texts = ["The json module encodes and decodes JSON.", "A much longer text about the os.path module, "
             "which manipulates path names on every platform Python supports."]
    st = SentenceTransformer(encoder.path, device="cpu")
    want = st.encode(texts, normalize_embeddings=True)
    d = encoder.embed_documents(texts, PoolingConfig(k=1, alpha=0.0))
    np.testing.assert_allclose(d.vectors[:, 0], want, atol=1e-5)
    np.testing.assert_allclose(d.vectors[:, 1], want, atol=1e-5)
    # the default pooling gives K+1 = 6 distinct unit vectors, the first one the global mean
    d6 = encoder.embed_documents(texts, PoolingConfig())
    assert d6.vectors.shape == (2, 6, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(d6.vectors, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(d6.vectors[:, 0], want, atol=1e-5)
    assert not np.allclose(d6.vectors[1, 1], d6.vectors[1, 5])


def test_encoder_bad_documents_counted_by_truncation_policy(encoder):
    import dataclasses

    from data_gen.encoder import Encoder

    long = "word " * 2000
    d = encoder.embed_documents(["", "   ", "x" * (encoder.cfg.max_chars + 1), long, "fine text"], PoolingConfig())
    assert d.rejected == {0: "empty_document", 1: "empty_document", 2: "document_huge"}
    assert d.ok == [3, 4] and d.truncated == [3]
    assert d.tokens <= 256 + 10
    strict = object.__new__(Encoder)
    strict.__dict__.update(encoder.__dict__, cfg=dataclasses.replace(encoder.cfg, truncation="reject"))
    d2 = strict.embed_documents([long, "fine text"], PoolingConfig())
    assert d2.rejected == {0: "document_too_long_for_encoder"} and d2.ok == [1]
