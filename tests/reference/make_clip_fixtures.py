#!/usr/bin/env python3
"""CLIP fixtures: BPE token ids, a CLIP-shaped TorchScript archive, and the PVLR text features torch
computes from it.

  tokens.json        {text: ids} for the THUMOS class names and some harder strings, from a restatement
                     of CLIP's tokenizer algorithm (clip/simple_tokenizer.py: bytes_to_unicode, the
                     pre-split regex, byte-level BPE with </w>; ftfy.fix_text is left out)
  clip.pt            torch.jit.trace of a CLIP-shaped module (token_embedding, positional_embedding,
                     transformer.resblocks.N with nn.MultiheadAttention, ln_final, text_projection, and a
                     `visual` stub and logit_scale a loader must skip), saved with torch.jit.save. As in
                     OpenAI's archives, Linear/attention weights and text_projection are fp16.
  embedding.npy      (77, W) PVLR's learnable prompt table E
  text_features.npy  (C+1, D) float32: PVLR's text features (model/wstal.py replace_text_embedding on
                     the class tokens, then CLIP's encode_text path with torch's own nn.MultiheadAttention),
                     computed in fp32 from the fp16-rounded weights, as clip.load does on the CPU
  meta.json          classes, width, layers, heads, vocab rows, the rows' token ids when compact

--width 512 --layers 12 --proj 1024 gives RN50's text tower (heads = width/64). --compact keeps only the
token-table rows the class names use (the ids are then row numbers into it, listed in meta.json), so a
small committed fixture needs no 49,408-row table.

usage: make_clip_fixtures.py OUT_DIR VOCAB.txt.gz [--width W] [--layers L] [--proj D] [--compact] [--seed S]
"""
import argparse, gzip, html, json, os
from collections import OrderedDict
import numpy as np
import regex as re
import torch
import torch.nn as nn

NAMES = ['baseball pitch', 'basketball dunk', 'billiards', 'clean and jerk', 'cliff diving', 'cricket bowling',
         'cricket shot', 'diving', 'frisbee catch', 'golf swing', 'hammer throw', 'high jump', 'javelin throw',
         'long jump', 'pole vault', 'shot put', 'soccer penalty', 'tennis swing', 'throw discus', 'volleyball spiking']
EXTRA = ['a diagram', 'a photo of a cat', 'Hello,   World!  it\'s 2024 &amp; naïve café', 'CO2-Net vs. PVLR (ACM MM 2024)',
         'don\'t stop; we\'ll see', 'ÄÖÜ straße 東京 😀', '<|startoftext|>x<|endoftext|>']


class Tokenizer:
    """CLIP's simple_tokenizer, restated."""
    def __init__(self, path):
        bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b); cs.append(256 + n); n += 1
        self.byte_encoder = dict(zip(bs, [chr(c) for c in cs]))
        merges = gzip.open(path).read().decode('utf-8').split('\n')[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = [chr(c) for c in cs] + [chr(c) + '</w>' for c in cs] + [''.join(m) for m in merges] + ['<|startoftext|>', '<|endoftext|>']
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {'<|startoftext|>': '<|startoftext|>', '<|endoftext|>': '<|endoftext|>'}
        self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float('inf')))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    out.append(best[0] + best[1]); i += 2
                else:
                    out.append(word[i]); i += 1
            word = tuple(out)
        self.cache[token] = ' '.join(word)
        return self.cache[token]

    def encode(self, text):
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r'\s+', ' ', text).strip().lower()
        ids = []
        for tok in re.findall(self.pat, text):
            tok = ''.join(self.byte_encoder[b] for b in tok.encode('utf-8'))
            ids.extend(self.encoder[t] for t in self.bpe(tok).split(' '))
        return ids


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, w, heads, mask):
        super().__init__()
        self.attn = nn.MultiheadAttention(w, heads)
        self.ln_1 = LayerNorm(w)
        self.mlp = nn.Sequential(OrderedDict([('c_fc', nn.Linear(w, 4 * w)), ('gelu', QuickGELU()), ('c_proj', nn.Linear(4 * w, w))]))
        self.ln_2 = LayerNorm(w)
        self.mask = mask

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, w, layers, heads, mask):
        super().__init__()
        self.resblocks = nn.Sequential(*[Block(w, heads, mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class CLIP(nn.Module):
    def __init__(self, vocab, w, layers, proj, ctx=77):
        super().__init__()
        mask = torch.full((ctx, ctx), float('-inf')).triu(1)
        self.visual = nn.Linear(4, proj)                               # not the text tower: skipped by a loader
        self.transformer = Transformer(w, layers, w // 64, mask)
        self.token_embedding = nn.Embedding(vocab, w)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, w) * 0.01)
        self.ln_final = LayerNorm(w)
        self.text_projection = nn.Parameter(torch.randn(w, proj) * w ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))

    def encode(self, x, eot):
        """CLIP's encode_text from the token embeddings on: (N, 77, W) -> (N, D)."""
        x = x + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection

    def forward(self, text):
        return self.encode(self.token_embedding(text), text.argmax(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out'); ap.add_argument('vocab')
    ap.add_argument('--width', type=int, default=64); ap.add_argument('--layers', type=int, default=1)
    ap.add_argument('--proj', type=int, default=32); ap.add_argument('--compact', action='store_true')
    ap.add_argument('--seed', type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    tk = Tokenizer(a.vocab)
    with open(os.path.join(a.out, 'tokens.json'), 'w') as f:
        json.dump({t: tk.encode(t) for t in NAMES + EXTRA}, f, indent=0, ensure_ascii=False)
    sot, eot_id = 49406, 49407
    toks = [[sot] + tk.encode(n) + [eot_id] for n in NAMES]
    used = sorted({i for t in toks for i in t})
    row = {i: r for r, i in enumerate(used)} if a.compact else {i: i for i in used}
    vocab = len(used) if a.compact else 49408
    m = CLIP(vocab, a.width, a.layers, a.proj)
    nn.init.normal_(m.token_embedding.weight, std=0.02)
    half = [n for n, _ in m.named_parameters() if n == 'text_projection' or ('.attn.' in n or '.mlp.' in n or n.startswith('visual'))]
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n in half:
                p.copy_(p.half().float())                              # the values the fp16 archive holds
    # PVLR's prompt (wstal.py replace_text_embedding): E everywhere; class rows SOT at 0, name tokens at 5..,
    # EOT at ind + 8; the background row is E alone and reads position 0
    C, L, pre, post = len(NAMES), 77, 4, 4
    E = torch.randn(L, a.width) * 0.01
    X = E.unsqueeze(0).repeat(C + 1, 1, 1)
    eot = torch.zeros(C + 1, dtype=torch.long)
    with torch.no_grad():
        for i, t in enumerate(toks):
            emb = m.token_embedding(torch.tensor([row[j] for j in t]))
            ind = len(t) - 1
            X[i, 0] = emb[0]; X[i, pre + 1:pre + ind] = emb[1:ind]; X[i, pre + ind + post] = emb[ind]
            eot[i] = pre + ind + post
        feats = m.encode(X, eot)
        traced = torch.jit.trace(m, torch.zeros(1, L, dtype=torch.long))
    for n, p in traced.named_parameters():
        if n in half:
            p.data = p.data.half()
    torch.jit.save(traced, os.path.join(a.out, 'clip.pt'))
    np.save(os.path.join(a.out, 'embedding.npy'), E.numpy().astype(np.float32))
    np.save(os.path.join(a.out, 'text_features.npy'), feats.numpy().astype(np.float32))
    with open(os.path.join(a.out, 'meta.json'), 'w') as f:
        json.dump({'classes': NAMES, 'width': a.width, 'layers': a.layers, 'heads': a.width // 64, 'proj': a.proj,
                   'vocab_rows': vocab, 'row_ids': used if a.compact else None}, f)


if __name__ == '__main__':
    main()
