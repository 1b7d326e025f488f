"""The red-flag rules: one per warning sign, each a regular expression over the user's (spell-fixed) words.

Why one table: every sign is auditable in one place, next to the knowledge-base file whose "Red flags" section
states it (``source``). Shared pieces (what counts as the lesion, a baby, a fever, the words allowed between a lesion
and its sign) are named once above the table. Which hits are then set aside (negations, general questions, signs
settled long ago) is decided in ``screen.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Urgency = Literal["soon", "now"]

_LESION = (
    r"(?:mole|moles|spot|spots|freckle|mark|lesion|growth|lump|bump|patch|it|naevus|nevus|naevi|nevi|papule|nodule|dot)"
)
# a mole in lay or clinical words: "my mole", "a naevus", "a pigmented papule"
_MOLE = r"(?:mole|moles|freckle|birthmark|naevus|nevus|naevi|nevi|pigmented (?:lesion|papule|macule|spot))"
_STILL_THE_LESION = (
    r"(?:mole|moles|spot|spots|freckle|freckles|mark|lesion|growth|lump|bump|patch|birthmark|skin|area|naevus|nevus)"
)
_OTHER_SUBJECT = (  # "... and my eczema itches", "..., my psoriasis is spreading": the sign belongs to something else
    r"(?:(?:and|but|while|whereas|though|although|plus|yet|also)\W+|(?<=, ))(?:my|his|her|their|our|the|this)\W+"
    rf"(?!{_STILL_THE_LESION}\b)\w+"
)
# up to ten words between a lesion word and its warning sign, none of them starting another subject's clause
_WORDS_BETWEEN = rf"(?:\W+(?!{_OTHER_SUBJECT})\w+){{0,10}}?\W+"
_ONE_OF_THEM = r"one of (?:them|those|these|my moles|the moles)"  # "all my moles are fine but one of them itches"
_BABY = (  # "baby", "newborn", "my 4 month old", "a six-week-old", "baby 3mo", "my 1 yr old"
    r"(?:newborn|baby|infant|(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven)[- ](?:weeks?|months?)[- ]old|"
    r"\d+ ?(?:mo|mos|wk|wks|weeks?|months?)\b(?: old)?|(?:1|2|one|two)[- ](?:yr|year)s?[- ]old|little one|\d+/52)"
)
_FEVER = (  # a fever in words or in degrees: "shivery", "a temp of 38.9", "39 degrees", "101F" (not "hay fever")
    r"(?:(?<!hay )(?<!scratch )fever\w*|febrile|pyrex\w*|high temperature|shiver\w*|chills|rigors|hot and cold|(?:cold )?sweats|burning up|"
    r"feel\w* (?:really |very |so )?(?:unwell|ill|poorly|rough|awful|terrible)|(?:3[89]|40)(?:[.,]\d)? ?(?:°|degrees|c\b)|"
    r"10[0-4](?:[.,]\d)? ?(?:°|degrees|f\b)|(?:temp(?:erature)?|t) (?:of |is |was |at |over |above |about |around )*(?:3[89]|40|"
    r"10[0-4])(?:[.,]\d)?\b)"
)
_PAIN = r"(?:hurts?|hurting|painful|tender|sore|sting\w*|prickl\w*|irritat\w*|throb\w*|ach\w*|burn\w*|tickl\w*)"
_RED = r"(?:red\w*|pink\w*|erythem\w*|cellulitis)"  # the colour of an infection, in lay or clinical words
_COLOUR = r"(?:brown|black|blue|bluish|grey|gray|greyish|red|reddish|pink|pinkish|white|whitish|purple|dark)"
_DREW = r"\b(?:drew|drawn|marked|traced|outlined)\b"
_PAST_THE_LINE = r"(?:past|beyond|outside|over) (?:it\b|(?:the |my |that )?(?:pen |marker |biro )?(?:line|lines|mark|marks|outline)\b)"
_DRAWN_ROUND = (  # the pen-line check: "drew round it with a biro at 8am and by lunch it's 3cm past it"
    rf"{_DREW}(?:\W+(?!mole|moles|freckle|spot)\w+){{0,24}}?\W+{_PAST_THE_LINE}|\b(?:past|beyond|outside) (?:the |my )?"
    r"(?:pen|marker|biro) (?:line|mark|outline)"
)
_TURNED_DARK = (  # "went from light brown to black", "has turned black", "has gone really dark"
    r"(?:went|gone|turned|turning|turns|became|become|becoming|going) (?:from (?:\w+ ){1,2}to )?(?:(?:very|really|much|"
    r"quite|completely|all|more|almost|nearly|pretty|a lot) )?(?:black\w*|dark\w*|blue\w*|grey\w*|gray\w*|charcoal|jet|ink\w*|"
    r"navy)\b"
)


@dataclass(frozen=True)
class Rule:
    """One warning sign: what the user may write, how urgent it is, and which KB passage says so."""

    id: str
    urgency: Urgency
    what: str  # plain words for the notice ("a mole or spot that bleeds")
    source: str  # knowledge-base condition file whose red-flags section states it
    pattern: re.Pattern[str]
    negatable: bool = True  # "not bleeding" cancels it (rules that are negative by nature set False)


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


RULES: tuple[Rule, ...] = (
    Rule(
        "bleeding_lesion",
        "soon",
        "a mole or spot that bleeds",
        "melanoma",
        _rx(
            rf"\b{_LESION}\b{_WORDS_BETWEEN}(?:bleed\w*|bled|blood\w*|haemorrhag\w*|hemorrhag\w*)\b|\b(?:bleed\w*|bloody)\b"
            rf"(?! hearts?\b){_WORDS_BETWEEN}(?!it\b){_LESION}\b|\b(?:started|keeps?|began) (?:to )?bleed\w*|"
            # blood found on clothes or bedding, then traced to the spot: "blood on my pillow from the mole"
            rf"\bblood (?:on|over|all over|onto) (?:\w+\W+){{1,12}}?{_LESION}\b|"
            # "weeps a bit of red onto his vest", "started weeping like a tiny bit of red stuff"
            rf"\b{_LESION}\b{_WORDS_BETWEEN}(?:weep\w*|ooz\w*|leak\w*)\b(?:\W+\w+){{0,6}}?\W+(?:red|blood\w*)\b"
        ),
    ),
    Rule(
        "changing_mole",
        "soon",
        "a mole or spot that is changing",
        "melanocytic_nevus",
        _rx(
            rf"\b(?:{_MOLE}|spot|mark|{_ONE_OF_THEM})\b{_WORDS_BETWEEN}(?:chang\w*|grow\w*(?! (?:a |long |dark |black )?hairs?\b)|grew|getting (?:bigger|"
            rf"darker|larger|raised)|got (?:bigger|darker|larger)|bigger|darker|larger|spread\w*|new colou?rs?|enlarg\w*|"
            rf"raised now|different (?:colou?r|shape)|{_TURNED_DARK}|twice (?:the|its) (?:size|width)|twice as (?:big|wide|large)|"
            rf"doubled|(?:now|become|became|gone|got|getting) (?:\w+ )?(?:raised|lumpy|bumpy)|(?:irregular|ragged|jagged|uneven|"
            rf"blurr\w*|fuzzy|smudg\w*|notched) (?:edges?|borders?|outline)|(?:edges?|borders?|outline|sides?)\b(?:\W+\w+){{0,3}}?"
            rf"\W+(?:smudg\w*|blurr\w*|fuzzy|ragged|jagged|irregular|notched|uneven)\b)|\b(?:edges?|borders?|outline) of (?:my |the "
            rf"|this |that )?(?:mole|spot|freckle)\b(?:\W+\w+){{0,3}}?\W+(?:irregular|ragged|jagged|uneven|blurr\w*|fuzzy|notched)\b|"
            r"\b(?:changing|changed|growing|evolving) (?:mole|spot|freckle)|"
            # "it's twice as big as in my holiday photos, the mole on my calf I mean"
            r"\b(?:twice|double|three times) as (?:big|large|wide|dark)\b(?:\W+\w+){0,12}?\W+(?:mole|freckle|spot|birthmark)\b|"
            # clinical: "enlargement of a pre-existing naevus", "new irregular notched border"
            rf"\benlarg\w*\b(?:\W+\w+){{0,4}}?\W+{_MOLE}|\b(?:new )?(?:irregular|notched) (?:and |, )?(?:notched |irregular )?borders?\b|"
            # "was flat my whole life and now it's raised", "used to be flat and now you can feel it stick up"
            rf"\b{_MOLE}\b(?:\W+\w+){{0,8}}?\W+(?:was|used to be) (?:always |completely )?flat\b(?:\W+[\w']+){{0,6}}?\W+now\b"
            r"(?:\W+[\w']+){0,4}?\W+(?:raised|lumpy|bumpy|sticking (?:out|up)|sticks? (?:out|up))\b|"
            # "drew round my mole ... now it goes past the line"
            rf"{_DREW}(?:\W+\w+){{0,4}}?\W+(?:mole|freckle|spot)\b(?:\W+\w+){{0,16}}?\W+{_PAST_THE_LINE}"
        ),
    ),
    Rule(
        "itchy_mole",
        "soon",
        "a mole that itches, crusts or hurts",
        "melanoma",
        _rx(
            rf"\b(?:{_MOLE}|{_ONE_OF_THEM})\b{_WORDS_BETWEEN}(?:itch\w*|crust\w*|scab\w*|ooz\w*|prurit\w*|tickl\w*)\b|"
            # pain only close to the lesion word: sore muscles or a sore throat later in the message are not the mole
            rf"\b(?:{_MOLE}|{_ONE_OF_THEM})\b(?:\W+(?!{_OTHER_SUBJECT})\w+){{0,8}}?\W+{_PAIN}\b|"
            r"\b(?:itchy|crusty|crusting|painful|sore|tender|prickly|stinging|throbbing|pruritic) (?:mole|freckle|birthmark|naevus|"
            r"nevus)|"
            # the itch placed at the mole after another subject: "I have a mole and my back itches around it"
            r"\b(?:mole|freckle|birthmark)\b(?:\W+\w+){0,12}?\W+(?:itch\w*|hurts?|sore|crust\w*) (?:all )?(?:around|near|next to|beside|"
            r"under) (?:it|the mole|my mole|the freckle|the birthmark)\b"
        ),
    ),
    Rule(
        "new_mole_adult",
        "soon",
        "a new mole in adult life",
        "melanocytic_nevus",
        _rx(
            r"\bnew (?:dark |black |brown )?(?:mole|moles|freckle)\b(?![- ](?:check\w*|map\w*|scan\w*|app|clinic))|\bnew (?:dark|black|dark brown|brown) (?:spot|mark|dot)\b|"
            r"\b(?:mole|dark spot|black dot|dark dot)s? (?:that )?(?:just |recently )?(?:appeared|came up|showed up)\b"
        ),
    ),
    Rule(
        "new_mole_story",  # the same sign told with a negation in it, so a negation cannot cancel it
        "soon",
        "a new mole in adult life",
        "melanocytic_nevus",
        _rx(
            r"\b(?:mole|moles|spot|mark|freckle|dot|lesion)\b(?:\W+\w+){0,12}?\W+(?:(?:(?:wasn'?t|was not|weren'?t|were not|never used "
            r"to be) there|(?:didn'?t|did not) have (?:it|that|this|one)) (?:before|last year|a year ago|last (?:summer|winter|spring|"
            r"autumn|month)|a few months ago|until recently|(?:\d+|a|two|three|six) (?:months?|years?) ago)|(?:has |had )?never been "
            r"there (?:before)?)\b|"
            # "isn't in any of our holiday photos from two years ago", "not visible in her admission photos"
            r"\b(?:isn'?t|is not|wasn'?t|was not|not|aren'?t|are not) (?:visible |there |showing )?(?:in|on) (?:any of )?(?:our|my|"
            r"the|his|her|their|old) (?:\w+ )?(?:photos|pictures|pics|photographs)\b"
        ),
        negatable=False,
    ),
    Rule(
        "ugly_duckling",
        "soon",
        "a spot that looks unlike your other moles",
        "melanoma",
        _rx(
            r"\b(?:looks?|is) (?:different|unlike) (?:from |to |than )?(?:all )?(?:my |the )?other (?:moles|spots)\b|"
            r"\b(?:several|many|multiple|different|diff) (?:colou?rs|shades)\b|\b(?:black and blue|blue[- ]black)\b|"
            r"\b(?:looks?|looking|stands? out) like (?:an? |the )?ugly duckling\b|\bugly duckling\b(?:\W+\w+){0,8}?\W+(?:i think |"
            r"maybe )?i(?:'ve| have)? (?:got|have|found) one\b|\bodd one out\b|\bvariegat\w*|"
            rf"\b(?:mole|freckle|spot|birthmark)\b{_WORDS_BETWEEN}(?:two|three|four|2|3|4) (?:\w+ )?(?:colou?rs|shades|tones)\b|"
            # three colours named in a row: "brown black and sort of bluish bits"
            r"\b(?:brown|black|blue\w*|grey|gray|red\w*|pink\w*|white)\b(?:(?:,? and|,|&|/)? (?:sort of |kind of |some )?(?:brown|black|"
            r"blue\w*|grey|gray|red\w*|pink\w*|white)\b){2,}|"
            # two different colours on one mole: "red and black in it", "a white ghosty patch and dark bits"
            rf"\b(?:{_MOLE}|this one|that one|{_ONE_OF_THEM})\b(?:\W+\w+){{0,10}}?\W+(?P<first>{_COLOUR})\w*\b(?:\W+\w+){{0,2}}?,? (?:and|&|with|plus) (?:\w+ ){{0,2}}?"
            rf"(?!(?P=first)){_COLOUR}\w*\b|"
            # unlike the others: "stands out like a sore thumb", "none of my other moles look like it", "darker than the rest"
            r"\bstands? out (?:like|from)\b|\bnone of (?:my|the|his|her) other (?:moles|spots|freckles)\b(?:\W+\w+){0,3}?\W+like "
            r"(?:it|this|that)\b|\b(?:match|matches|look the same|look alike) except\b|\b(?:darker|bigger|lighter|redder|different|"
            r"blacker)\b (?:than|from|to) (?:all )?(?:the rest|the others|all the others|my other (?:moles|spots|freckles))\b|\b(?:when|"
            r"while|whereas|but) (?:all )?(?:the|my|his|her) others? (?:moles |ones )?(?:are|look)\b|\b(?:all )?(?:my|the) (?:other )?"
            r"moles (?:are|look)\b(?:\W+\w+){0,8}?\W+(?:except|but|apart from) (?:this|that|one)\b"
        ),
    ),
    Rule(
        "nonhealing_sore",
        "soon",
        "a sore or spot that has not healed",
        "basal_cell_carcinoma",
        _rx(
            r"\b(?:won'?t|will not|doesn'?t|does not|didn'?t|did not|hasn'?t|has not|not|never|isn'?t|is not) "
            r"(?:\w+ )?(?:heal(?:ed|ing)?|closed? up|closing up)\b|\b(?:keeps|keep) (?:coming back|scabbing|opening|breaking open)\b|"
            r"\bnon[- ]?healing\b|\b(?:sore|scab|ulcer|wound)s?\b(?:\W+\w+){0,6}?\W+(?:(?:been )?there|had it|lasted|for) "
            r"(?:for |over )?(?:\d+|three|four|five|six|eight|several|many) (?:weeks|months)\b|\b(?:sore|scab|ulcer|wound)s?"
            r"\b(?:\W+\w+){0,4}?\W+(?:never|won'?t|doesn'?t|does not|will not) (?:go|goes|going) away\b|"
            # "heals a bit then breaks down again"
            r"\bheals? (?:\w+ ){0,3}(?:then|and then|but then) (?:\w+ ){0,2}(?:breaks? (?:down|open)|opens? (?:up )?again|bleeds? "
            r"again|comes? back|scabs? (?:over )?again)\b|"
            # "an ulcer on his shin since the summer"; "crusts and weeps every month, always the exact same place"
            r"\b(?:sore|scab|ulcer|wound)s?\b(?:\W+\w+){0,6}?\W+since (?:the |last )?(?:summer|winter|spring|autumn|fall|christmas|"
            r"easter|january|february|march|april|may|june|july|august|september|october|november|december)\b|\b(?:crust\w*|weep\w*|"
            r"bleed\w*|scab\w*)\b(?:\W+\w+){0,10}?\W+(?:the )?(?:exact )?same (?:place|spot)\b"
        ),
        negatable=False,
    ),
    Rule(
        "growing_lump",
        "soon",
        "a lump or growth that is getting bigger quickly",
        "squamous_cell_carcinoma",
        _rx(
            r"\b(?:lump|bump|growth|nodule|spot|mole)s?\b(?:\W+\w+){0,8}?\W+(?:grow\w*|grew|grown|getting (?:bigger|big)|got (?:bigger|"
            r"big)|doubled|shot up|shooting up|balloon\w*|mushroom\w*)\b(?:\W+\w+){0,3}?\W*(?:(?:really |very |s+o+ )?(?:fast|quickly|"
            r"quick|rapidly)|like (?:crazy|mad)|(?:in|over|within) (?:about |around |approximately |approx\.? |roughly |under |less than "
            r"|just |only )?(?:a few|a couple of|\d+|a|one|two|three|four|five|six) (?:days|weeks|months?)|every (?:day|week)|week to "
            r"week|day by day)\b|"
            r"\b(?:fast|rapidly|quickly)[- ]growing\b|\b(?:bigger|larger) (?:every|each) (?:day|week)\b|\b(?:getting|got) bigger (?:week "
            r"to week|day by day|by the day|by the week)\b|"
            # a size told by comparison: "was pea sized last month and now more like a marble", "went from a pea to a 50p
            # coin in about a month", "came up 3 weeks ago and it's already the size of a grape", "1cm last week 1.5cm today"
            r"\b(?:lump|bump|growth|nodule|spot|mole)s?\b(?:\W+\w+){0,8}?\W+(?:was|used to be)\b(?:\W+\w+){0,8}?\W+(?:and |but )?"
            r"now (?:\w+ ){0,2}(?:bigger|larger|wider|(?:more )?like an?|the size of|as big as)\b|"
            r"\b(?:was|started|began|used to be)\b(?:\W+\w+){0,8}?\W+(?:pea|lentil|rice|pinhead|pimple|dot|speck)\b(?:\W+\w+){0,8}?\W+"
            r"now\b(?:\W+[\w']+){0,3}?\W+(?:grape|marble|cherry|walnut|golf|egg|coin|50p|olive|blueberry|plum|conker|bigger|larger)\b|"
            r"\b(?:lump|bump|growth|nodule|spot|mole)s?\b(?:\W+\w+){0,8}?\W+(?:went|gone|grown) from\b(?:\W+\w+){1,4}?\W+to\b(?:\W+\w+)"
            r"{1,4}?\W+in (?:about |around |under |less than |just |only )?(?:a|one|two|three|\d+|a few|a couple of) (?:days?|weeks?|months?)\b|"
            r"\b(?:came up|appeared|popped up|showed up|started)\b(?:\W+\w+){0,4}?\W+(?:about |around |only |just )?(?:\d+|a|one|two|"
            r"three|a few|a couple of) (?:days?|weeks?) ago\b(?:\W+[\w']+){0,6}?\W+(?:already|now) (?:\w+ ){0,2}(?:the size of|as big "
            r"as|like an?|bigger)\b|"
            r"\b\d+(?:\.\d+)? ?(?:cm|mm)\b(?:\W+\w+){0,3}?\W+(?:last week|a week ago|yesterday|\d+ days ago)\b(?:\W+\w+){0,3}?\W+"
            r"\d+(?:\.\d+)? ?(?:cm|mm)\b"
        ),
    ),
    Rule(
        "nail_streak",
        "soon",
        "a dark line in a nail",
        "melanoma",
        _rx(
            r"\b(?:dark|black|brown|pen|ink) (?:line|streak|stripe|band|mark)\b(?:\W+\w+){0,8}?\W+(?:nail|nails|fingernail|"
            r"toenail|thumbnail|thumb nail)|\bmelanonychia\b|"
            # the nail named first: "my nail has a dark streak in it", "the mark under my toenail is like a splinter of black"
            r"\b(?:nail|nails|fingernail|toenail|thumbnail)\b(?:\W+\w+){0,6}?\W+(?:(?:dark|black|brown|pen|ink) (?:line|streak|"
            r"stripe|band|mark)|(?:splinter|streak|line|stripe|band) of (?:black|dark|brown))\b"
        ),
    ),
    Rule(
        "fever_spreading_red",
        "now",
        "fever with red, hot or spreading skin",
        "cellulitis",
        _rx(
            # forwards a bare "temperature" or "temp" will do ("a temperature and the area is red"), backwards it
            # needs a figure ("red ... and her temperature is 38.5", not "red, what temperature should the bath be");
            # "sores", not "a bit sore" (an arm sore after a jab is not a skin sign)
            rf"\b(?:{_FEVER}|temperature|temp)(?:\W+\w+){{0,12}}?\W+(?:{_RED}|hot|warm|swell\w*|swollen|spread\w*|rash|blister\w*|"
            rf"pus|sores)\b|\b(?:{_RED}|hot|warm|swollen|spread\w*|rash|blister\w*|pus|sores)\b(?:\W+\w+){{0,12}}?\W+{_FEVER}"
        ),
    ),
    Rule(
        "spreading_redness",
        "now",
        "redness that is spreading fast",
        "cellulitis",
        _rx(
            rf"\b(?:{_RED}|swelling|infection|rash)\b(?:\W+\w+){{0,4}}?\W+(?:spread\w*|extend\w*|creep\w*|mov\w*|track\w*) "
            r"(?:(?:really|very|so) )?(?:fast|quickly|rapidly|up|every hour|by the hour)|\bred streaks?\b|"
            # a red line that travels ("a red tide line creeping up my calf"), not a scratch's thin red line
            r"\bred (?:\w+ )?lines?\b(?:\W+\w+){0,6}?\W+(?:up|going|spreading|running|tracking|creeping|moving|climbing|along|"
            r"towards?)\b|"
            rf"\b(?:{_RED}|swelling|infection)\b(?:\W+\w+){{0,6}}?\W+(?:getting (?:bigger|larger|wider)|growing|spreading|enlarging)"
            r" (?:(?:really|very|so) )?(?:by the hour|every hour|fast|quickly|rapidly)\b|"
            rf"\b(?:{_RED}|swelling|infection)\b(?:\W+\w+){{0,12}}?\W+(?:bigger|larger|wider) (?:within|in|by) (?:the|an|one|the "
            r"last) hour\b|"
            # "creeping up my calf ... moved about 5 cm since this morning"
            r"\b(?:creep\w*|crawl\w*|climb\w*|tracking|travell?ing|mov\w*) up (?:my|his|her|the) (?:leg|arm|calf|thigh|shin|neck|"
            r"hand|foot|back|chest)\b|\b(?:moved|spread|grown|gone|extended) (?:about |around |nearly |over |another )?\d+ ?(?:cm|mm|"
            r"inch\w*)\b(?:\W+\w+){0,2}?\W+(?:since|in)\b|"
            rf"{_DRAWN_ROUND}|"
            # within hours: "was the size of a 20c coin this morning and now it covers half his face"
            rf"\b(?:{_RED}|swelling|swollen|rash|infection)\b(?:\W+\w+){{0,14}}?\W+(?:this morning|last night|earlier today|hours? ago|"
            r"at \d+ ?(?:am|pm)|at (?:breakfast|lunch))\b(?:\W+\w+){0,8}?\W+(?:now|by (?:lunch|tonight|this evening|the evening))\b"
            r"(?:\W+\w+){0,3}?\W+(?:covers|covering|half|whole|twice|doubled|bigger|spread\w*|past|up to|down to|across)\b"
        ),
    ),
    Rule(
        "non_blanching",
        "now",
        "a rash of spots that do not fade under pressure",
        "drug_eruption",
        _rx(
            r"\bnon[- ]?blanching\b|\b(?:doesn'?t|does not|don'?t|do not|won'?t|didn'?t|did not) (?:fade|"
            r"go away|disappear|blanch)\w* (?:when|under|with|if) (?:i |you )?(?:press|push|a glass|the glass|glass)|"
            r"\bglass test\b(?:\W+\w+){0,6}?\W+(?:didn'?t|did not|doesn'?t|does not|don'?t|do not|failed|positive|still)\b|"
            r"\b(?:did|tried|done|doing|failed) (?:the |a )?glass test\b|\bpurpl\w*(?:[- ]\w+)? (?:spots?|rash|dots|blotches|patches)|\bpetechi\w*|\bpurpura\b|"
            r"\bpin[- ]?(?:prick|point)\w* (?:\w+ ){0,2}(?:spots|dots|rash)\b|"
            # "pressed a glass on them and they didn't go away", "you can still see them through the glass"
            r"\b(?:glass|tumbler)\b(?:\W+\w+){0,8}?\W+(?:(?:didn'?t|did not|don'?t|do not|doesn'?t|does not|won'?t|wont) (?:\w+ )?"
            r"(?:go away|fade|disappear|blanch)|still (?:there|visible|showing|see))|\bstill (?:see|visible|there)\b(?:\W+\w+){0,4}?\W+"
            r"(?:glass|tumbler)\b"
        ),
        negatable=False,
    ),
    Rule(
        "eye_involvement",
        "now",
        "a rash, sores or blisters near the eye",
        "herpes_zoster",
        _rx(
            r"\b(?:shingles|blisters?|vesicles?|rash|sores?|cold sores?|spots)\b(?:\W+\w+){0,5}?\W+(?:near|around|on|by|next to|"
            r"close to|in)\W+(?:\w+\W+){0,4}(?:eye|eyes|eyelids?|tip of (?:my |the )?nose)\b|\b(?:shingles|rash|blisters?|vesicles|"
            r"blistery)\b(?:\W+\w+){0,20}?\W+(?:eye|eyes|vision|sight)\b(?:\W+\w+){0,3}?\W+(?:hurts?|painful|red|sore|blurr\w*|"
            r"chang\w*|gritty|swollen|watering|weeping)|"
            # a rash spreading from the forehead down to the tip of the nose, or "going down towards my eye"
            r"\b(?:shingles|blisters?|vesicles|blistery|rash|sores?)\b(?:\W+\w+){0,16}?\W+(?:tip of (?:my |the |his |her )?nose)\b|"
            r"\b(?:shingles|blisters?|vesicles|blistery|rash|sores?)\b(?:\W+\w+){0,10}?\W+(?:towards?|down to|up to|into|spreading to|"
            r"going to) (?:\w+ ){0,2}(?:eye|eyes|eyelids?)\b|"
            # shingles on the forehead (the nerve that also serves the eye); "my eyelid has got little blisters on it"
            r"\bshingles\b(?:\W+\w+){0,4}?\W+(?:forehead|eyebrow|temple)\b|\b(?:eyelids?|eye ?lids?)\b(?:\W+\w+){0,6}?\W+(?:blisters?|"
            r"vesicles|shingles|sores)\b"
        ),
    ),
    Rule(
        "anaphylaxis",
        "now",
        "swelling of the face, lips or throat, or trouble breathing",
        "urticaria",
        _rx(
            # puffy eyes alone (a late night, hay fever) are not this sign; an eye swollen shut is
            r"\b(?:lips?|tongue|throat|face|cheeks?)\b(?:\W+\w+){0,3}?\W+(?:swell\w*|swollen|puff\w*)|\beyes? (?:\w+ ){0,2}swollen "
            r"shut\b|\b(?:swell\w*|swollen)"
            r"\W+(?:\w+\W+){0,2}(?:lips?|tongue|throat|face)\b|\bthroat (?:feels |is |getting |gets )?(?:tight\w*|"
            r"closing)|\btight\w* (?:in )?(?:my |the )?throat\b|\b(?:trouble|difficulty|hard|struggling|can'?t|cannot) "
            r"(?:to )?(?:breath\w*|swallow\w*)|\b(?:hard|trouble|difficult\w*|struggling) (?:to )?(?:get|take|catch) (?:a |my )?"
            r"(?:full |deep )?breath\w*|\bwheez\w*|\b(?:fainted|fainting|feel\w* faint|collapsed|collapsing)\b|"
            r"\bangio-?o?edema\b|\bvoice (?:change\w*|gone hoarse|is hoarse)\b|\bstuck in (?:my |the )?throat\b|\btongue (?:feels |is )?"
            r"(?:too )?(?:big|thick|fat)\b"
        ),
    ),
    Rule(
        "skin_peeling_blisters",
        "now",
        "blistering or peeling skin, or sore mouth and eyes with a rash",
        "drug_eruption",
        _rx(
            r"\bskin (?:is )?(?:peeling|coming) off\b|\b(?:peeling|blistering) (?:skin )?all over\b|\bblisters? "
            r"(?:all over|everywhere|spreading)\b|\b(?:blisters?|sores?) (?:in|inside) (?:my |the )?(?:mouth|eyes)\b|"
            r"\b(?:mouth|eyes|lips) (?:and \w+ )?(?:are |is )?(?:sore|blistered|peeling)\b(?:\W+\w+){0,8}?\W+rash\b|"
            r"\bblister\w* and peeling\b|\bpeeling and blister\w*|\b(?:whole|entire) body\b(?:\W+\w+){0,6}?\W+(?:red|"
            r"peeling|blister\w*)\b|\bbullae\b|\bbullous\b|"
            # "a rash and my mouth is full of ulcers", "blisters popping up all over my body", "skin sliding off like a
            # wet tissue", "skin shears away with gentle friction"
            r"\brash\b(?:\W+\w+){0,12}?\W+(?:mouth|lips)\b(?:\W+\w+){0,4}?\W+(?:ulcers|sores|blisters|peeling|raw)\b|"
            r"\b(?:mouth|lips)\b(?:\W+\w+){0,4}?\W+(?:ulcers|sores|blisters)\b(?:\W+\w+){0,12}?\W+rash\b|"
            r"\bblisters?\b(?:\W+\w+){0,4}?\W+all over\b|\bskin (?:\w+ )?(?:comes|came|coming|slides?|slid|sliding|peels?|peeled|"
            r"peeling|shears?|sheared|shearing) (?:away|off)\b"
        ),
    ),
    Rule(
        "bleeding_wont_stop",
        "now",
        "bleeding that does not stop with pressure",
        "pyogenic_granuloma",
        _rx(
            r"\b(?:won'?t|doesn'?t|does not|will not|can'?t|cannot)\W+(?:\w+\W+){0,2}stop (?:the )?bleed\w*|"
            r"\b(?:bleed\w*|blood)\b(?:\W+\w+){0,12}?\W+(?:won'?t|wont|doesn'?t|does not|will not|didn'?t|did not) stop\b|"
            r"\bbleeding a lot\b|\bblood (?:is )?(?:still|keeps) (?:coming|pouring|dripping|running)\b|\bstill (?:bleeding|going|"
            r"pouring|dripping) after (?:about |over |nearly |almost )?(?:[1-9]\d|ten|fifteen|twenty|thirty|forty|half an) min\w*|"
            # ten minutes or more ("been bleeding for 30 mins")
            r"\bbleed\w* for (?:over |more than |about |nearly |almost |at least )?(?:(?:[1-9]\d\d?|ten|fifteen|twenty|thirty|"
            r"forty|half an) min\w*|(?:an|\d+|one|two|a few|several) hours?)\b|"
            # pressure that is not working: "pressing with a towel for 25 min and it's still pouring", "continues to bleed
            # despite 20 min firm pressure", "gone through 3 plasters"
            r"\b(?:press\w*|pressure|holding|held)\b(?:\W+\w+){0,14}?\W+(?:still (?:pouring|gushing|dripping|bleeding|coming out)|"
            r"(?:isn'?t|is not|not|doesn'?t|does not|didn'?t) (?:doing anything|helping|working|stopping it))\b|\b(?:bleed\w*)\b"
            r"(?:\W+\w+){0,3}?\W+despite\b(?:\W+\w+){0,4}?\W+pressure\b|\b(?:gone|soaked|bled) through (?:\d+|two|three|four|several|"
            r"a few) (?:plasters|bandages|dressings|towels|pads)\b"
        ),
        negatable=False,
    ),
    Rule(
        "severe_pain",
        "now",
        "pain much worse than the skin looks, or a very painful hot swelling",
        "cellulitis",
        _rx(
            r"\b(?:pain\w*|hurts?|hurting)\b(?:\W+\w+){0,4}?\W+(?:(?:s+o+|much|way|a lot|far|loads) )*(?:more|worse) than "
            r"(?:it|the skin|they|this|that) looks?\b|\b(?:very|extremely|really) painful,? (?:red,? )?(?:hot|swollen)\b|"
            r"\bpain (?:is )?(?:out of proportion|disproportionate)|\bdisproportionate pain\b|"
            # "just a bit of redness on the skin but the pain is unbearable"
            rf"\b(?:{_RED}|swollen|swelling|hot)\b(?:\W+\w+){{0,12}}?\W+(?:unbearable|excruciating|agonis\w*|agoniz\w*|agony|unreal)\b|"
            rf"\b(?:unbearable|excruciating|agonis\w*|agoniz\w*|agony|unreal)\b(?:\W+\w+){{0,12}}?\W+(?:{_RED}|swollen|swelling|hot)\b|"
            # "hurts like crazy 10/10 but there's barely anything to see", "on fire though you can hardly see anything";
            # a swelling "very hot and throbbing"
            r"\b(?:hurts?|hurting|pain\w*|on fire)\b(?:\W+[\w']+){0,10}?\W+(?:barely|hardly|not much|nothing much) (?:anything )?"
            r"(?:to see|there|visible|showing|looks?|see (?:anything|it))\b|\b(?:swelling|swollen|lump|boil|abscess)\b(?:\W+\w+){0,6}?"
            r"\W+(?:very |really |extremely |so )?hot\b(?:\W+\w+){0,3}?\W+(?:throbb\w*|painful|agony)\b|\b(?:pain\w*|hurts?)\b"
            r"(?:\W+\w+){0,8}?\W+(?:10 ?/ ?10|ten out of ten)"
        ),
    ),
    Rule(
        "baby_fever_rash",
        "now",
        "a baby with a rash and a fever, or blisters",
        "hand_foot_mouth",
        _rx(
            rf"\b{_BABY}\b(?:\W+\w+){{0,10}}?\W+(?:{_FEVER}|fever|temperature|temp|blisters?|floppy|hot to (?:the )?touch|burning up|"
            r"fluid[- ]filled)"
        ),
    ),
    Rule(
        "baby_not_feeding",
        "now",
        "a baby or young child who is not feeding or drinking",
        "hand_foot_mouth",
        _rx(
            rf"\b(?:{_BABY}|toddler|child)\b(?:\W+\w+){{0,12}}?\W+(?:(?:is |has )?(?:not|isn'?t|won'?t|wont|stopped|refus\w*|barely|"
            r"hardly|hasn'?t|has not)(?: to)? (?:\w+ )?(?:feed\w*|drink\w*|drunk|eat\w*|took|taken|take|had|bottles?|breast\w*)|off "
            r"(?:his|her|their) feeds?|(?:dry|no wet) (?:nappy|nappies|nappys|diapers?)|(?:nappy|nappies|diaper)'?s?(?: \w+){0,3} dry|"
            r"feed\w* poorly|poor feeding|only (?:\d|one|two|three) wet (?:nappies|nappys|diapers))\b|"
            # milk or a bottle names a baby: "he won't take his milk", "won't go on the breast at all"
            r"\b(?:won'?t|wont|will not|isn'?t|refus\w*|not|hasn'?t|has not) (?:\w+ )?(?:take|taking|drink\w*|have|having|had|go on|"
            r"latch\w*(?: on)?)(?: to)? (?:his|her|their|any|the|a) (?:milk|bottles?|feeds?|formula|breast|boob)\b"
        ),
        negatable=False,
    ),
)
