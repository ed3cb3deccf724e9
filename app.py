"""Unlearning Lab dashboard entry point (``streamlit run app.py``)."""

import streamlit as st

st.set_page_config(page_title="Unlearning Lab", layout="wide")
st.title("Unlearning Lab")
st.write("Machine unlearning on image classifiers: pick a data set, a model and a forget set, "
         "run unlearning methods, and see what changed.")
