"""Everyday rewordings of the example FAQs in assets/corpora/, each with the FAQ question it asks.

Written apart from the FAQ and worded differently from it; bench/bot_quality.py uses a FAQ and paraphrases
of its own, so the bot is not tuned on what the tests check.
"""

CUSTOMER_SERVICE = {
    "When do you open in the morning?": "What are your opening hours?",
    "How late are you open tonight?": "What are your opening hours?",
    "Can I come by on a Sunday?": "Are you open on Sundays?",
    "Is the shop open at the weekend, on Sunday?": "Are you open on Sundays?",
    "I want my money back for this cream I bought": "Can I return a product and get a refund?",
    "How do I send something back?": "Can I return a product and get a refund?",
    "Can I pay with my card?": "Which payment methods do you accept?",
    "Do you take cash?": "Which payment methods do you accept?",
    "Will you bring my order to my house?": "Do you deliver to my home?",
    "Is home delivery possible?": "Do you deliver to my home?",
    "My package hasn't arrived, where is it?": "Where is my order?",
    "I'd like to track what I ordered": "Where is my order?",
    "My doctor gave me a prescription, what do I do with it?": "How do I fill a prescription?",
    "How long does it take to get my prescription ready?": "How do I fill a prescription?",
    "I'm running out of my usual pills, can I get more?": "Can I order a refill of my regular medicine?",
    "Can I get the flu jab without booking?": "Do I need an appointment for a flu vaccination?",
    "Where can I leave my car?": "Is there parking near the pharmacy?",
    "I moved, can you deliver to my new address instead?": "Can I change my delivery address?",
    "Is there a rewards programme for regular customers?": "Do you have a loyalty card?",
    "I'd like to buy a voucher as a present": "Do you sell gift cards?",
    "What do you do with my personal information?": "How do you protect my personal data?",
    "Can I talk to the pharmacist about my symptoms?": "Can I ask the pharmacist for advice?",
}

ASSISTIVE_CARE = {
    "What time is the carer coming?": "When does my carer come today?",
    "When will the nurse visit me this evening?": "When does my carer come today?",
    "Could my carer come later tomorrow?": "Can I change the time of my carer's visit?",
    "I can't remember if I had my pills today": "Did I take my medicine this morning?",
    "Please help me remember my medication": "Can you remind me to take my tablets?",
    "What's on the menu for lunch?": "What is for lunch today?",
    "I need someone to buy my groceries": "Who can help me with shopping?",
    "How can I get to the hospital for my check-up?": "How do I get a lift to my doctor's appointment?",
    "I have nobody to talk to": "I feel lonely",
    "Can my son look at my care plan?": "Can my daughter see my care plan?",
    "How can I reach the office?": "How do I contact the care office?",
    "Who cleans my apartment?": "Someone needs to clean my flat",
    "I can't hear anything with my hearing aid": "My hearing aid is not working",
    "Is anything happening this week that I could join?": "What activities are there this week?",
    "How do I pay my bill for the care?": "How do I pay for the care service?",
    "Do you bring food on Saturdays too?": "Can I have a hot meal on weekends?",
}

# Urgent messages worded unlike the detector's examples (bot/escalation.py URGENT_EXAMPLES).
URGENT = [
    "My husband collapsed and is not waking up",
    "I fell in the kitchen and I can't stand up",
    "There's a crushing pressure in my chest and my left arm hurts",
    "I can hardly get any air",
    "I swallowed all my sleeping pills",
    "I want to die",
    "I'm going to end it tonight",
    "My grandma is lying on the floor and won't answer me",
    "Grandad's speech is slurred and his face looks lopsided",
    "I've taken a whole packet of paracetamol",
    "My friend is foaming at the mouth and shaking",
    "I don't see the point in living any more",
    "I keep cutting my arms",
    "Please send help, my wife isn't breathing",
]

# Questions neither the FAQs nor the general corpus can answer.
OUT_OF_SCOPE = [
    "What is the airspeed velocity of an unladen swallow carrying a coconut?",
    "Please translate this paragraph into Finnish for me",
    "How many tyres does the 14:05 train from Leeds have?",
    "Xyzzy frobnicate the quux",
    "Which screw size fits a 1970s Swedish bookshelf?",
]
