"""Landscape explorer: the library's optimizers on toy test functions (CPU, cached per input)."""
import pandas as pd
import streamlit as st

from alto.plots.landscape import explorer_figures
from alto.probes.landscape import (E_WRAPPED, GD_SCALE, LANDSCAPES, grid, run_trajectory, stability_bound,
                                   trajectory_rows)

LABELS = {"gd": "GD", "sgd": "SGD", "adam": "Adam", "e_gd": "E-GD", "e_sgd": "E-SGD", "e_adam": "E-Adam",
          "alto": "ALTO", "lamb": "Lamb", "lion": "LION"}
USES_ALPHA = (*E_WRAPPED, "alto")
# What each landscape opens with: the paper's settings where it gives them.
DEFAULTS = {"squared_cardioid": dict(optimizers=["gd", "e_gd"], alpha=-20.0),
            "f1": dict(optimizers=["adam", "alto"], alpha=-80.0, beta2=0.95),
            "f2": dict(optimizers=["adam", "alto"], alpha=-90.0),
            "curved_valley": dict(optimizers=["gd", "adam", "e_gd", "alto"], alpha=-50.0)}
FALLBACK = dict(optimizers=["gd", "adam", "e_gd", "alto"], alpha=-20.0)
LRS = sorted({round(m * 10.0 ** k, 10) for k in range(-6, 1) for m in (1, 2, 5)} - {2.0, 5.0})
NOISES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]


@st.cache_data(show_spinner="Running the optimizers…", max_entries=64)
def explore(name: str, optimizers: tuple, lr_gd: float, lr_adaptive: float, alpha: float, beta1: float,
            beta2: float, steps: int, noise: float, seed: int, start: tuple, init: str, trust: bool,
            unstable: bool) -> dict:
    """Trajectories of every chosen optimizer and the figures drawn from them."""
    ls = LANDSCAPES[name]
    runs = {}
    for opt in optimizers:
        extra = {"allow_unstable": unstable}
        if opt in E_WRAPPED:
            extra["init"] = init
        if opt in ("alto", "lamb"):
            extra.update(betas=(beta2, 0.99), trust_ratio="paper" if trust else "reference")
        runs[LABELS[opt]] = run_trajectory(ls, opt, steps=steps, lr=lr_gd if opt in GD_SCALE else lr_adaptive,
                                           alpha=alpha, beta1=beta1, noise=noise, seed=seed, start=start,
                                           extra=extra)
    grid_arrays = grid(ls, 160 if ls.dim == 2 else 600)
    return {"figures": explorer_figures(ls, runs, grid_arrays), "rows": trajectory_rows(runs, ls.dim)}


st.title("Landscape explorer")
st.caption("The library's own optimizers (alto.optim) on two-dimensional and one-dimensional test functions, "
           "in float64 on the CPU. Every run is deterministic; results are cached per setting.")

with st.sidebar:
    st.header("Test function")
    names = list(LANDSCAPES)
    linked = st.query_params.get("landscape")  # ?landscape=f1 opens that function
    name = st.selectbox("Landscape", names, index=names.index(linked) if linked in names else 0,
                        format_func=lambda n: LANDSCAPES[n].title)
    ls = LANDSCAPES[name]
    d = {**FALLBACK, "beta1": 0.99, "beta2": 0.9, **DEFAULTS.get(name, {})}
    st.header("Optimizers")
    optimizers = st.multiselect("Optimizers", list(LABELS), default=d["optimizers"], format_func=LABELS.get,
                                key=f"opts_{name}")
    lr_gd = st.select_slider("lr for GD, SGD, E-GD, E-SGD", sorted({*LRS, ls.lr_gd}),
                             value=ls.lr_gd, format_func=lambda v: f"{v:g}", key=f"lr_gd_{name}")
    lr_adaptive = st.select_slider("lr for Adam, E-Adam, ALTO, Lamb, LION",
                                   sorted({*LRS, ls.lr_adaptive}), value=ls.lr_adaptive,
                                   format_func=lambda v: f"{v:g}", key=f"lr_ad_{name}")
    alpha = st.slider("α (E / ALTO)", -120.0, 10.0, d["alpha"], 0.5, key=f"alpha_{name}",
                      help="α < 0 explores along valleys (large batch); α > 0 is the small-batch setting.")
    beta1 = st.slider("β1 (EMA of gradient differences)", 0.0, 0.999, d["beta1"], 0.001, format="%.3f",
                      key=f"beta1_{name}")
    bound = stability_bound(beta1)
    st.caption(f"Stability bound: |α| < 1/(1 − β1) = **{bound:.4g}**")
    unstable = st.checkbox("Allow |α| beyond the bound (study divergence)", key=f"unstable_{name}")
    steps = st.slider("Steps", 10, 5000, ls.steps, 10, key=f"steps_{name}")
    noise = st.select_slider("Gradient noise σ", NOISES, value=0.0, key=f"noise_{name}",
                             help="Adds N(0, σ²) to every gradient component. σ = 0 is full-batch gradient "
                                  "descent; a larger σ mimics a smaller batch (mini-batch noise grows as the "
                                  "batch shrinks).")
    seed = st.number_input("Noise seed", 0, 10_000, 0, key=f"seed_{name}")
    st.header("Start point")
    start = tuple(st.slider(axis, float(lo), float(hi), float(s0), (hi - lo) / 200, key=f"start_{axis}_{name}")
                  for axis, (lo, hi), s0 in zip("xy", ls.bounds, ls.start))
    with st.expander("More settings"):
        beta2 = st.slider("β2 of ALTO and Lamb (first moment)", 0.0, 0.999, d["beta2"], 0.005, format="%.3f",
                          key=f"beta2_{name}")
        init = st.selectbox("E's initial gradient history", ["first_grad", "zeros"], key=f"init_{name}",
                            help="first_grad: a₁ = 0 (what the reference does on problems this small); "
                                 "zeros: the first difference is the whole first gradient.")
        trust = st.checkbox("Trust ratio on Lamb / ALTO (trust_ratio = 'paper')", key=f"trust_{name}")

st.markdown(f"**{ls.title}** — `{ls.formula}`")
st.caption(ls.notes)

chosen = list(optimizers)
if abs(alpha) >= bound:
    left_out = [LABELS[o] for o in chosen if o in USES_ALPHA]
    if unstable:
        st.warning(f"alpha = {alpha:g} is beyond the stability bound |alpha| < 1/(1 − beta1) = {bound:.4g}: "
                   "running anyway, as asked. Expect oscillation or divergence.")
    else:
        st.error(f"alpha = {alpha:g} violates the stability bound |alpha| < 1/(1 − beta1) = {bound:.4g} "
                 f"(beta1 = {beta1:.3f}). " + (f"Left out: {', '.join(left_out)}. " if left_out else "")
                 + "Reduce |α|, raise β1, or tick “Allow |α| beyond the bound”.")
        chosen = [o for o in chosen if o not in USES_ALPHA]
else:
    st.caption(f"|α| = {abs(alpha):g} < 1/(1 − β1) = {bound:.4g}: within the stability bound.")
if not chosen:
    st.info("Choose at least one optimizer to run.")
    st.stop()

result = explore(name, tuple(chosen), lr_gd, lr_adaptive, alpha, beta1, beta2, steps, noise, int(seed), start,
                 init, trust, unstable)
figs = result["figures"]
st.plotly_chart(figs["main"], key="landscape_main")
if ls.dim == 2:
    st.caption("Use ▶ or the slider under the plot to replay the paths step by step. Shading: log10 of the loss; "
               "the side plots use the same colours.")
cols = st.columns(3)
side = ["loss", "a", "position" if ls.dim == 1 else "valley"]
for col, key in zip(cols, side):
    with col:
        if figs[key] is None:
            st.info("‖a‖ exists only for E-GD, E-SGD, E-Adam and ALTO.")
        else:
            st.plotly_chart(figs[key], key=f"landscape_{key}")
st.dataframe(pd.DataFrame(result["rows"]), hide_index=True, column_config={
    "lr": st.column_config.NumberColumn(format="%g"),
    "final loss": st.column_config.NumberColumn(format="%.3e"),
    "distance along valley": st.column_config.NumberColumn(format="%.3f")})

with st.expander("What to look for", expanded=True):
    st.markdown(
        "- **The paper's story** (squared cardioid, GD vs E-GD, α = −20, β1 = 0.99): plain gradient descent "
        "stops where it first reaches the zero-loss valley; E-GD keeps moving *along* it. The bar chart measures "
        "that distance along the valley floor.\n"
        "- **Trust ratio:** with weight decay 0 the reference Lamb/ALTO applies no trust ratio. Tick "
        "“Trust ratio” to use the paper's rule: the step becomes lr·‖θ‖·u/‖u‖, proportional to the distance "
        "from the origin, so it grows far from 0 and stalls near it (the cardioid's cusp is at the origin).\n"
        "- **E's initial history:** the reference adaptor starts with a₁ = 0 (`first_grad`: the previous "
        "gradient is set to the first one) on problems this small, so the paper's toy figures ran that way. "
        "With `zeros` the first gradient itself counts as a difference; on the cardioid E-GD then stops "
        "where GD stops. On toy problems this choice decides the picture; on real networks it is one step "
        "among thousands.\n"
        "- **Gradient noise** makes even plain GD wander along a flat valley: small batches explore by "
        "themselves, which is why the paper uses α > 0 for small batches and α < 0 for large ones."
    )
