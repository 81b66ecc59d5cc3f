"Heading anchors as Quarto (pandoc) makes them, which nbdev's doc links use"
import re

def pandoc_slug(text):
    "`CAMNet` → camnet, `Learner.fit` → learner.fit, `The pyramid` → the-pyramid"
    s = re.sub(r'\s+', '-', re.sub(r'[^\w\s.-]', '', text.lower()).strip())
    return re.sub(r'^[^a-z]+', '', s) or 'section'
