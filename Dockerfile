# The grading image: the course's pinned environment plus bubblewrap, for grading many
# submissions in a container (docs/instructors.md, "Grading at scale"). Build: make grader-image
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tinyir
COPY requirements.lock pyproject.toml README.md ./
COPY tinyir ./tinyir
COPY exercises ./exercises
# The CPU build of torch (PyPI's default on x86 is the multi-GB CUDA build).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements.lock \
    && pip install --no-cache-dir --no-deps -e . \
    && useradd --create-home grader
# The checks of 05 build their reference model on the pydocs tokenizer: build it into the image.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN tinyir data build \
    && python -c "from tinyir.course.models import pydocs_tokenizer; pydocs_tokenizer()"

USER grader
WORKDIR /grading
ENTRYPOINT ["tinyir"]
CMD ["grade", "--help"]
