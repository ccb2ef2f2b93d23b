"""The VPL paper's tables: its reported numbers and the Markdown of a measured report.

``tools/analysis/paper_tables.py`` measures, on the user's data, the rows of the paper's
Table 1 (seeds and pseudo-masks on VOC train), Table 3 (rows I–VI on VOC val), Table 4
(single vs ensemble prompts) and Tables 5–7 (the τ_I, Φ and T_w sweeps); this module
holds what the paper reports for them (Xu et al., AAAI 2025; docs/method.md §7) and
writes a report next to them. Only numbers the paper states are here: a sweep row whose
figure we do not have has no paper number (``None``), only the paper's best setting.
The paper's numbers are PASCAL VOC's; other datasets get no paper column.
"""
from typing import Dict, List, Optional, Sequence

# Table 1 (VOC train, 1,464 images): seed and pseudo-mask mIoU.
TABLE1 = {'CLIP-ES': dict(seed=70.8, pseudo=75.0),
          'CLIP-ES + VPL': dict(seed=76.3, pseudo=78.4)}
# Table 3 (VOC val): the ablation rows.
TABLE3 = (('I', 'text prototypes (CLIP-ES seeds)', 63.3),
          ('II', 'vision prototypes (VPL seeds)', 68.2),
          ('III', '+ CRF (pseudo-masks)', 71.3),
          ('IV', 'decoder on III, CE', 75.5),
          ('V', '+ RSC', 77.2),
          ('VI', '+ CRF at test', 78.5))
# Table 4 (VOC val seeds): prototypes x prompt templates. Baseline_e is Table 3's row I
# and VPL_e its row II; Baseline_s is not known to us.
TABLE4 = (('Baseline_s', 'text', 'single', None), ('Baseline_e', 'text', 'ensemble', 63.3),
          ('VPL_s', 'vision', 'single', 66.8), ('VPL_e', 'vision', 'ensemble', 68.2))
# Tables 5-7: the sweeps' values and the paper's best setting (per-value figures unknown).
SWEEPS = dict(tau_i=dict(values=(0.01, 0.02, 0.03, 0.04, 0.05), best=0.03,
                         title='Table 5: τ_I (vision-prototype temperature)'),
              phi=dict(values=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7), best=0.4,
                       title='Table 6: Φ (CAA box threshold)'),
              t_w=dict(values=(1000, 1500, 2000, 2500, 3000, 3500), best=3000,
                       title='Table 7: T_w (prototype-learning iterations)'))


def _num(v: Optional[float]) -> str:
    return '—' if v is None else f'{v:.2f}'


def _paper(v: Optional[float], compare: bool) -> str:
    return f'{v:.1f}' if compare and v is not None else ''


def format_markdown(report: dict) -> str:
    """The report of ``tools/analysis/paper_tables.py`` as Markdown tables, every row
    next to the paper's number (VOC runs; empty where the paper gives none)."""
    cmp = bool(report.get('paper_comparable'))
    out = [f"# The VPL paper's tables on `{report['config']}`", '']
    if not cmp:
        out += ['The paper reports PASCAL VOC; this run is on '
                f"{report.get('dataset', 'another dataset')}: no paper column.", '']
    for note in report.get('notes', []):
        out.append(f'- {note}')
    if report.get('notes'):
        out.append('')
    splits = report['splits']
    if report.get('table1'):
        out += [f"## Table 1: seeds and pseudo-masks on {splits['table1']['name']} "
                f"({splits['table1']['images']} images)", '',
                '| method | seed mIoU | paper | pseudo-mask mIoU | paper |',
                '|---|---|---|---|---|']
        for row in report['table1']:
            out.append(f"| {row['method']} | {_num(row['seed'])} | "
                       f"{_paper(row['paper_seed'], cmp)} | {_num(row['pseudo'])} | "
                       f"{_paper(row['paper_pseudo'], cmp)} |")
        out.append('')
    out += [f"## Table 3: ablation on {splits['val']['name']} ({splits['val']['images']} "
            'images)', '', '| row | | val mIoU | paper | train mIoU |', '|---|---|---|---|---|']
    for row in report['table3']:
        out.append(f"| {row['id']} | {row['name']} | {_num(row['val'])} | "
                   f"{_paper(row['paper'], cmp)} | {_num(row.get('train'))} |")
    out.append('')
    if report.get('table4'):
        out += ['## Table 4: prompt templates (seed mIoU)', '',
                '| setting | prototypes | templates | val | paper | train |',
                '|---|---|---|---|---|---|']
        for row in report['table4']:
            out.append(f"| {row['id']} | {row['prototypes']} | {row['templates']} | "
                       f"{_num(row['val'])} | {_paper(row['paper'], cmp)} | "
                       f"{_num(row['train'])} |")
        out.append('')
    for key, rows in (report.get('sweeps') or {}).items():
        spec = SWEEPS[key]
        out += [f"## {spec['title']} (seed mIoU)", '',
                '| value | val | train | paper | paper\'s best |', '|---|---|---|---|---|']
        for row in rows:
            best = '✓' if cmp and row['value'] == spec['best'] else ''
            out.append(f"| {row['value']:g} | {_num(row['val'])} | {_num(row['train'])} | "
                       f"{_paper(row['paper'], cmp)} | {best} |")
        out.append('')
    gap = report.get('gap') or {}
    if gap.get('text') and gap.get('vision'):
        out += ['## Modality gap (text → vision prototypes)', '',
                '| figure | text | vision |', '|---|---|---|']
        for k in ('patch_acc', 'patch_acc_fg', 'centroid_gap', 'proto_shift'):
            if k in gap['text']:
                out.append(f"| {k} | {gap['text'][k]:.4f} | {gap['vision'][k]:.4f} |")
        out.append('')
    diag = report.get('diagnostics') or {}
    if diag.get('V_with_labels') is not None:
        out += [f"Row V with the image-level labels given (as rows I–III are): "
                f"{diag['V_with_labels']:.2f} (plain {_num(diag.get('V_plain'))}).", '']
    stages = report.get('stages') or {}
    if stages:
        out += ['## Stages', '', '| stage | seconds | |', '|---|---|---|']
        for name, st in stages.items():
            out.append(f"| {name} | {st['seconds']:.1f} | {'cached' if st['cached'] else ''} |")
    return '\n'.join(out) + '\n'


def paper_rows(classes: Sequence[str], voc_classes: Sequence[str]) -> Dict[str, object]:
    """Whether the paper's (VOC) numbers apply to a dataset with ``classes``."""
    return dict(paper_comparable=tuple(classes) == tuple(voc_classes))


def sweep_rows(key: str, measured: Dict[float, dict]) -> List[dict]:
    """Rows of one sweep: the measured seeds per value, the paper's number (unknown: None)
    and whether the value is the paper's best."""
    best = SWEEPS[key]['best']
    return [dict(value=v, val=m.get('val'), train=m.get('train'), paper=None,
                 paper_best=v == best) for v, m in measured.items()]
