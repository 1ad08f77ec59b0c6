"""One scheduler instance: claim loop and timing wheel, dispatcher, recorder, supervisor."""
